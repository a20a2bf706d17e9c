// session.ts — the cookie session of a person signed in through the identity provider (OIDC):
// loads GET /api/v1/auth/session into auth.ts at start and whenever the server asks for
// credentials, follows a sign-in that is still completing (the server exchanges the code in the
// background: "pending" for a moment after the provider sent the browser back), and signs out.
import { getAuthSession, logoutSession } from './api';
import { authState, setSession, signOut, subscribeAuth, type BrowserSession } from './auth';

let loading: Promise<void> | null = null;

/** Asks the server what the cookie stands for; while "pending", asks again until it is not. */
export function refreshSession(): Promise<void> {
    if (loading) return loading;
    loading = (async () => {
        const deadline = Date.now() + 30000;
        for (;;) {
            let s: BrowserSession;
            try {
                s = await getAuthSession() as BrowserSession;
            } catch {
                return; /* unreachable server: the views say so */
            }
            setSession(s);
            if (s.status !== 'pending' || Date.now() > deadline) return;
            await new Promise((r) => setTimeout(r, 250));
        }
    })().finally(() => { loading = null; });
    return loading;
}

/** Where the sign-in button sends the browser: the provider, then back to this page. */
export function loginHref(loginUrl: string): string {
    const here = location.pathname + location.search;
    return `${loginUrl}?returnTo=${encodeURIComponent(here.startsWith('/') ? here : '/')}`;
}

/** Sign out of whatever the page uses: the key is forgotten, a cookie session revoked. */
export async function signOutAll(): Promise<void> {
    const s = authState().session;
    let endSessionUrl: string | undefined;
    if (!authState().key && s?.status === 'active') {
        try {
            endSessionUrl = (await logoutSession()).endSessionUrl;
        } catch { /* already gone: signed out all the same */ }
    }
    signOut();
    if (endSessionUrl) location.assign(endSessionUrl);
}

/** Keeps the session known: at start, and each time the server turns the page to sign-in. */
export function watchSession(): void {
    void refreshSession();
    let needed = authState().needed;
    subscribeAuth(() => {
        const now = authState().needed;
        if (now && !needed) void refreshSession();
        needed = now;
    });
}
