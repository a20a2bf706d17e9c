// main.tsx — the application shell: header, the view for the current path, toasts.
import type { JSX } from 'preact';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { authState, keyLabel, subscribeAuth } from './auth';
import { signOutAll, watchSession } from './session';
import './styles.css';
import { Feed } from './views/Feed';
import { NewTask } from './views/NewTask';
import { Login } from './views/Login';
import { SessionPage } from './views/Session';
import { Link, Toasts, location, useStore } from './ui';

function View(): JSX.Element {
    const loc = useStore(location);
    const [path = '/', search = ''] = loc.split('?');
    const query = new URLSearchParams(search);
    const m = /^\/sessions\/([0-9A-Za-z]+)$/.exec(path);
    if (m) return <SessionPage key={m[1]} id={m[1]!} />;
    if (path === '/new') return <NewTask query={query} />;
    if (path === '/') return <Feed query={query} />;
    return (
        <section>
            <h1>Not found</h1>
            <p>Nothing lives at {path}. <Link href="/">Back to the sessions</Link></p>
        </section>
    );
}

function useAuth() {
    const [, force] = useState(0);
    useEffect(() => subscribeAuth(() => force((n) => n + 1)), []);
    return authState();
}

function App(): JSX.Element {
    const loc = useStore(location);
    const auth = useAuth();
    return (
        <>
            <a class="skip" href="#main">Skip to content</a>
            <header class="top">
                <Link href="/" class="brand" aria-label="Agent Harbor, all sessions">
                    <img src="/favicon.svg" alt="" width={22} height={22} /> Agent Harbor
                </Link>
                <nav aria-label="Main">
                    <Link href="/" class={loc === '/' || loc.startsWith('/?') ? 'active' : ''}>Sessions</Link>
                    <Link href="/new" class={loc.startsWith('/new') ? 'active' : ''}>New task</Link>
                    <a href="/api/docs">API</a>
                </nav>
                {auth.key ? (
                    <div class="user-menu" role="group" aria-label="Account">
                        <span class="muted" title="The API key this page uses">{keyLabel(auth.key)}</span>
                        <button type="button" class="sign-out" onClick={() => void signOutAll()}>Sign out</button>
                    </div>
                ) : auth.session?.status === 'active' && auth.session.user && (
                    <div class="user-menu" role="group" aria-label="Account">
                        <span class="muted" title={`Signed in through ${auth.session.oidc?.provider ?? 'the identity provider'}, tenant ${auth.session.user.tenantId}`}>
                            {auth.session.user.name} · {auth.session.user.role}</span>
                        <button type="button" class="sign-out" onClick={() => void signOutAll()}>Sign out</button>
                    </div>
                )}
            </header>
            <main id="main">{auth.needed ? <Login /> : <View key={auth.version} />}</main>
            <Toasts />
        </>
    );
}

watchSession();
render(<App />, document.getElementById('app')!);
