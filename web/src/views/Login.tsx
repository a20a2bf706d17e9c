// Login.tsx — the sign-in page, shown when the server answers 401. When the server trusts an
// identity provider (OIDC) the first choice is "Sign in with <provider>": the browser goes there
// and comes back with a session cookie (a sign-in still completing, or one that failed, is said
// so here). Otherwise, or as well, the user pastes an API key (made with `ah admin api-key
// create`, or by an admin over the API) or a JWT. The credential is tried with one read before
// it is kept; a refusal shows the server's Problem.
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { BASE, type Problem } from '../api';
import { authState, authorization, signIn, subscribeAuth } from '../auth';
import { useEffect } from 'preact/hooks';
import { loginHref } from '../session';

export function Login(): JSX.Element {
    const [key, setKey] = useState('');
    const [remember, setRemember] = useState(false);
    const [error, setError] = useState<string | null>(null);
    const [busy, setBusy] = useState(false);
    const [, force] = useState(0);
    useEffect(() => subscribeAuth(() => force((n) => n + 1)), []);
    const hadKey = authState().key !== null;
    const session = authState().session;
    const oidc = session?.oidc;

    const submit = async () => {
        const k = key.trim();
        if (!k || busy) return;
        setBusy(true);
        setError(null);
        try {
            const res = await fetch(`${BASE}/sessions?perPage=1`, {
                headers: { Accept: 'application/json', Authorization: authorization(k) }, cache: 'no-store' });
            if (res.ok) {
                signIn(k, remember);
                return;
            }
            let p: Problem | null = null;
            try { p = await res.json() as Problem; } catch { /* not a Problem */ }
            setError(p ? `${p.title}: ${p.detail ?? ''}`.trim() : `The server answered ${res.status}.`);
        } catch {
            setError('The server cannot be reached.');
        } finally {
            setBusy(false);
        }
    };

    const sessionNote = session?.status === 'pending' ? 'Completing the sign-in…'
        : session?.status === 'failed' ? `The sign-in failed: ${session.error ?? 'the identity provider was not trusted'}`
        : session?.status === 'expired' ? 'Your session has expired. Sign in again.'
        : null;

    return (
        <section class="login" aria-labelledby="login-title">
            <form class="login-form" onSubmit={(e) => { e.preventDefault(); void submit(); }}>
                <h1 id="login-title">Sign in</h1>
                {oidc && (
                    <>
                        {sessionNote && <p class={session?.status === 'failed' ? 'field-error' : 'muted'}
                                           role={session?.status === 'failed' ? 'alert' : 'status'}>{sessionNote}</p>}
                        <div class="actions">
                            <a class="button primary sso" href={loginHref(oidc.loginUrl)}
                               aria-disabled={oidc.ready ? undefined : 'true'}>Sign in with {oidc.provider}</a>
                        </div>
                        <p class="login-or muted" role="separator">or use an API key</p>
                    </>
                )}
                <p class="muted">
                    {hadKey ? 'The server refused the key this page was using. ' : oidc ? '' : 'This server requires credentials. '}
                    Paste an API key (<code>ahk_…</code>; an administrator makes one
                    with <code>ah admin api-key create</code>) or a token (JWT) from the identity
                    provider this server trusts.
                </p>
                <label for="login-key">API key or token</label>
                <input id="login-key" type="password" autoComplete="off" spellcheck={false} value={key}
                       aria-invalid={error ? 'true' : undefined} aria-describedby={error ? 'login-error' : undefined}
                       onInput={(e) => setKey((e.target as HTMLInputElement).value)} autoFocus={!oidc} />
                {error && <p id="login-error" class="field-error" role="alert">{error}</p>}
                <label class="check"><input type="checkbox" checked={remember}
                                            onChange={(e) => setRemember((e.target as HTMLInputElement).checked)} />
                    Remember on this device</label>
                <div class="actions"><button type="submit" class={oidc ? '' : 'primary'} disabled={busy || !key.trim()}>Sign in</button></div>
            </form>
        </section>
    );
}
