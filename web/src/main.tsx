// main.tsx — the application shell: header, the view for the current path, toasts.
import type { JSX } from 'preact';
import { render } from 'preact';
import './styles.css';
import { Feed } from './views/Feed';
import { NewTask } from './views/NewTask';
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

function App(): JSX.Element {
    const loc = useStore(location);
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
            </header>
            <main id="main"><View /></main>
            <Toasts />
        </>
    );
}

render(<App />, document.getElementById('app')!);
