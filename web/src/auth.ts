// auth.ts — the credential the UI sends, and whether the server wants one. A server with no API
// key configured (local mode) needs none and the UI never asks. Once it answers 401 the
// application shows the sign-in page; the API key (or a JWT from the identity provider the server
// trusts) entered there is sent with every request as `Authorization: ApiKey …` (or `Bearer …`;
// fetch, so the event and terminal streams carry it too). It is kept
// for this tab (sessionStorage), or on this device (localStorage) when the user asks to be
// remembered; signing out forgets it in both.
//
// A person may also sign in through the identity provider the server trusts (OIDC): the server
// then keeps the session behind an HttpOnly cookie the page never sees; what the page knows of it
// (user, role, and the CSRF token every change must carry) comes from GET /api/v1/auth/session,
// loaded by session.ts into `session` here. A pasted key wins over the cookie.
const STORAGE = 'ah.apiKey';

function stored(): string | null {
    try {
        return sessionStorage.getItem(STORAGE) ?? localStorage.getItem(STORAGE);
    } catch {
        return null; /* storage disabled: the key lives in memory only */
    }
}

/** What GET /api/v1/auth/session said (the shape of the AuthSession schema). */
export interface BrowserSession {
    status: 'none' | 'pending' | 'active' | 'failed' | 'expired' | 'signedOut';
    oidc?: { provider: string; loginUrl: string; ready: boolean };
    user?: { id: string; name: string; tenantId: string; role: 'viewer' | 'operator' | 'admin' };
    csrfToken?: string;
    error?: string;
}

export interface AuthState {
    key: string | null;
    /** The cookie session, once known (null before the first answer). */
    session: BrowserSession | null;
    /** The server refused a request for want of (valid) credentials. */
    needed: boolean;
    /** Bumped at each sign-in, so views re-open their streams with the new credential. */
    version: number;
}

let state: AuthState = { key: stored(), session: null, needed: false, version: 0 };
const listeners = new Set<() => void>();

function set(next: AuthState): void {
    state = next;
    for (const l of [...listeners]) l();
}

export function authState(): AuthState {
    return state;
}

export function subscribeAuth(l: () => void): () => void {
    listeners.add(l);
    return () => { listeners.delete(l); };
}

/** A JWT (three base64url parts) is a bearer token; anything else is sent as an API key. */
function isJwt(credential: string): boolean {
    return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(credential);
}

/** The Authorization header value for a credential. */
export function authorization(credential: string): string {
    return isJwt(credential) ? `Bearer ${credential}` : `ApiKey ${credential}`;
}

/** The headers that carry the credential (none in local mode): the key, or for a cookie session
 *  its CSRF token (the cookie itself goes along by the browser). */
export function authHeaders(): Record<string, string> {
    if (state.key) return { Authorization: authorization(state.key) };
    const csrf = state.session?.status === 'active' ? state.session.csrfToken : undefined;
    return csrf ? { 'X-CSRF-Token': csrf } : {};
}

/** The cookie session changed (session.ts): an active one signs the page in. */
export function setSession(session: BrowserSession): void {
    const wasActive = state.session?.status === 'active';
    const active = session.status === 'active' && !state.key;
    set({ ...state, session,
          needed: active ? false : state.needed,
          version: active && !wasActive ? state.version + 1 : state.version });
}

/** Every answer's status passes here: a 401 means the sign-in page. */
export function noteStatus(status: number): void {
    if (status === 401 && !state.needed) set({ ...state, needed: true });
}

export function signIn(key: string, remember: boolean): void {
    try {
        sessionStorage.removeItem(STORAGE);
        localStorage.removeItem(STORAGE);
        (remember ? localStorage : sessionStorage).setItem(STORAGE, key);
    } catch { /* storage disabled: memory only */ }
    set({ ...state, key, needed: false, version: state.version + 1 });
}

export function signOut(): void {
    try {
        sessionStorage.removeItem(STORAGE);
        localStorage.removeItem(STORAGE);
    } catch { /* nothing stored */ }
    set({ key: null, session: state.session && state.session.status === 'active'
            ? { ...state.session, status: 'signedOut', user: undefined, csrfToken: undefined } : state.session,
          needed: true, version: state.version + 1 });
}

/** What the user menu shows of a credential, never its secret: an API key's public id
 *  (ahk_<id>_<secret>), a token's subject. */
export function keyLabel(key: string): string {
    const m = /^ahk_([0-9a-f]+)_/.exec(key);
    if (m) return `key ${m[1]}`;
    if (isJwt(key)) {
        try {
            const part = key.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/');
            const claims = JSON.parse(atob(part + '='.repeat((4 - part.length % 4) % 4))) as { sub?: unknown };
            if (typeof claims.sub === 'string' && claims.sub) return claims.sub;
        } catch { /* not readable: say no more */ }
    }
    return 'signed in';
}
