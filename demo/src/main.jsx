// The page of the provisioning demo, written as in a Laravel app with
// React: Echo is configured from the VITE_REVERB_* values (replaced at
// build time) and each server card listens with useEcho() on its private
// channel servers.{id}.provision.  An event only says "something changed":
// the card refetches the server and renders what it gets.
import { useCallback, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { configureEcho, useConnectionStatus, useEcho } from '@laravel/echo-react';

configureEcho({
    broadcaster: 'reverb',
});

function Steps({ steps }) {
    return (
        <ol className="steps" data-testid="steps">
            {steps.map((s) => (
                <li key={s.name} data-step={s.name} data-state={s.state}>
                    <span className="dot">{s.state === 'done' ? '✓' : ''}</span>
                    {s.name}
                </li>
            ))}
        </ol>
    );
}

function ServerCard({ id, name }) {
    const [server, setServer] = useState(null);
    const [loadError, setLoadError] = useState(null);
    const [subscription, setSubscription] = useState({ state: 'subscribing' });
    const [events, setEvents] = useState([]);

    const refetch = useCallback(async () => {
        const res = await fetch(`/api/servers/${id}`, { headers: { Accept: 'application/json' } });
        if (!res.ok) {
            setLoadError(`${res.status} ${(await res.json()).message}`);
            return;
        }
        const s = await res.json();
        // answers can overtake each other: keep the newest state
        setServer((prev) => (!prev || s.version > prev.version ? s : prev));
    }, [id]);

    useEffect(() => {
        refetch();
    }, [refetch]);

    const { channel } = useEcho(
        `servers.${id}.provision`,
        'ServerProvisionUpdated',
        (e) => {
            setEvents((list) => [...list, e]);
            refetch();
        },
        [refetch],
    );

    useEffect(() => {
        const ch = channel();
        if (!ch) return;
        ch.subscribed(() => setSubscription({ state: 'subscribed' }));
        ch.error((err) => setSubscription({
            state: 'refused',
            status: err?.status,
            error: err?.error || String(err?.type || 'subscription error'),
        }));
    }, [channel]);

    const provision = async (fast) => {
        setEvents([]);
        const res = await fetch(`/api/servers/${id}/provision${fast ? '?fast=1' : ''}`, {
            method: 'POST',
            headers: { Accept: 'application/json' },
        });
        if (res.ok) {
            const s = await res.json();
            setServer((prev) => (!prev || s.version > prev.version ? s : prev));
        }
    };

    const status = server?.status;
    const busy = status === 'provisioning';
    const channelName = `private-servers.${id}.provision`;

    return (
        <section className="card" data-testid={`server-${id}`} data-status={status || 'unknown'}
            data-mode={server?.mode || ''} data-events={events.length}
            data-last-event={events.length ? (events.at(-1).step ?? events.at(-1).status) : ''}
            data-subscription={subscription.state}>
            <h2>
                {server?.name || name}
                {status && <span className={`badge ${status}`} data-testid="status">{status}</span>}
                {loadError && <span className="badge refused" data-testid="status">forbidden</span>}
            </h2>
            <div className="meta">
                {server ? `${server.ip} · ` : ''}
                <code>{channelName}</code>{' '}
                <span className={`badge ${subscription.state}`} data-testid="subscription">
                    {subscription.state}
                </span>
            </div>
            {server && (
                <>
                    <div className="row">
                        <button type="button" disabled={busy || subscription.state !== 'subscribed'}
                            onClick={() => provision(false)}>Provision</button>
                        <button type="button" className="secondary"
                            disabled={busy || subscription.state !== 'subscribed'}
                            onClick={() => provision(true)}>Provision (fast, 50 ms steps)</button>
                    </div>
                    <Steps steps={server.steps} />
                    <div className="events">
                        <span data-testid="event-count">{events.length}</span> ServerProvisionUpdated
                        {events.length === 1 ? ' event' : ' events'} received
                        {server.mode ? ` (${server.mode} mode)` : ''}
                        <ol data-testid="event-log" hidden>
                            {events.map((e, i) => <li key={i}>{e.step ?? e.status}</li>)}
                        </ol>
                    </div>
                </>
            )}
            {loadError && (
                <div className="alert" data-testid="load-error">
                    GET /api/servers/{id}: {loadError}
                </div>
            )}
            {subscription.state === 'refused' && (
                <div className="alert" data-testid="subscription-error">
                    Subscription refused{subscription.status ? ` (${subscription.status})` : ''}:{' '}
                    {subscription.error}
                </div>
            )}
        </section>
    );
}

function App() {
    const status = useConnectionStatus();
    return (
        <>
            <header>
                <h1>Servers</h1>
                <span className={`conn ${status}`} data-testid="connection">{status}</span>
                <span className="user">Signed in as Taylor (user 1)</span>
            </header>
            <main>
                <ServerCard id={1} name="web-1" />
                <ServerCard id={2} name="db-1" />
            </main>
            <footer>
                @laravel/echo-react · broadcaster &quot;reverb&quot; · served by nginx with ngx-pusher
            </footer>
        </>
    );
}

createRoot(document.getElementById('root')).render(<App />);
