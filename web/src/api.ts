// api.ts — the only module that talks HTTP. Every request and answer is typed by the types
// generated from api/openapi.json at build time (web/build.mjs → @api/openapi), so a change of
// the contract that breaks the UI breaks the build. Views call these functions, never fetch.
import type { components, paths } from '@api/openapi';
import { authHeaders, noteStatus } from './auth';

export type Schemas = components['schemas'];
export type Session = Schemas['Session'];
export type SessionList = Schemas['SessionList'];
export type SessionStatus = Schemas['SessionStatus'];
export type AgentEvent = Schemas['Event'];
export type CreateTaskRequest = Schemas['CreateTaskRequest'];
export type CreateTaskResponse = Schemas['CreateTaskResponse'];
export type Problem = Schemas['Problem'];
export type Repository = Schemas['Repository'];
export type RepositoryList = Schemas['RepositoryList'];
export type Branch = Schemas['RepositoryBranches']['branches'][number];
export type AgentCatalog = Schemas['AgentCatalog'];
export type RuntimeCatalog = Schemas['RuntimeCatalog'];
export type Draft = Schemas['Draft'];
export type AuthSession = Schemas['AuthSession'];
export type DraftBody = Schemas['DraftBody'];
export type DraftList = Schemas['DraftList'];
export type ControlAccepted = Schemas['ControlAccepted'];
export type FileChange = Schemas['FileChange'];
export type FileChangeList = Schemas['FileChangeList'];
export type FileDiff = Schemas['FileDiff'];
export type FileContent = Schemas['FileContent'];
export type WorkspaceNode = Schemas['WorkspaceNode'];
export type Timeline = Schemas['Timeline'];
export type Moment = Schemas['Moment'];
export type FsSnapshot = Schemas['FsSnapshot'];
export type SeekRequest = Schemas['SeekRequest'];
export type SeekResult = Schemas['SeekResult'];

/** The body of POST session-branch: the generated type is `unknown` (the schema's anyOf), and
 *  agent settings are free-form objects. */
export interface BranchBody {
    fsSnapshotId?: string; fromTs?: number; seq?: number; name?: string; injectedMessage?: string;
    agents?: { type?: string; settings?: Record<string, unknown> }[];
}

/** One side of a row of `format=split` (the contract types `split` as a plain object). */
export interface SplitSide { line: number; text: string }
export interface SplitRow { kind: 'context' | 'change' | 'add' | 'del'; left: SplitSide | null; right: SplitSide | null }
export interface SplitHunk { header: string; old_start: number; new_start: number; rows: SplitRow[] }
export interface SplitFile { path: string; old_path: string | null; status: string; binary: boolean; hunks: SplitHunk[] }

export const BASE = '/api/v1';

/** Terminal states (the SessionStatus schema): nothing more happens to these sessions. */
export const TERMINAL: ReadonlySet<SessionStatus> = new Set<SessionStatus>(
    ['stopped', 'completed', 'failed', 'cancelled']);
export const ACTIVE: ReadonlySet<SessionStatus> = new Set<SessionStatus>(
    ['queued', 'provisioning', 'running', 'pausing', 'paused', 'resuming', 'stopping']);
export const ALL_STATUSES: readonly SessionStatus[] = ['queued', 'provisioning', 'running',
    'pausing', 'paused', 'resuming', 'stopping', 'stopped', 'completed', 'failed', 'cancelled'];

/** A failed request: the server's Problem (RFC 9457) when it sent one, else a transport error. */
export class ApiError extends Error {
    readonly status: number;
    readonly problem: Problem | null;
    constructor(status: number, problem: Problem | null, message: string) {
        super(message);
        this.name = 'ApiError';
        this.status = status;
        this.problem = problem;
    }
    /** Per-field messages of a validation problem, keyed by dotted JSON path (D4). */
    get fields(): Record<string, string[]> {
        return (this.problem?.errors as Record<string, string[]> | undefined) ?? {};
    }
}

/** Paths of the contract, with {param} filled in: a typo in a path is a type error. */
type ApiPath = keyof paths;
type Strip<P extends string> = P extends `/api/v1${infer R}` ? R : never;
export function url<P extends ApiPath>(path: Strip<P & string> | '', params: Record<string, string> = {},
                                       query: Record<string, string | number | undefined> = {}): string {
    let p = BASE + path.replace(/\{(\w+)\}/g, (_, k: string) => encodeURIComponent(params[k] ?? ''));
    const q = Object.entries(query).filter(([, v]) => v !== undefined && v !== '')
        .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
    if (q.length) p += '?' + q.join('&');
    return p;
}

async function request<T>(method: string, target: string, body?: unknown,
                          signal?: AbortSignal, extra: Record<string, string> = {}): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json', ...authHeaders(), ...extra };
    const init: RequestInit = { method, headers, credentials: 'same-origin' };
    if (signal) init.signal = signal;
    if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
    }
    let res: Response;
    try {
        res = await fetch(target, init);
    } catch (e) {
        if (e instanceof DOMException && e.name === 'AbortError') throw e;
        throw new ApiError(0, null, 'The server cannot be reached. Is `ah webui` still running?');
    }
    noteStatus(res.status);
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    let json: unknown = null;
    try {
        json = text ? JSON.parse(text) : null;
    } catch {
        /* not JSON: reported below */
    }
    if (!res.ok) {
        const problem = json && typeof json === 'object' && 'detail' in json ? json as Problem : null;
        throw new ApiError(res.status, problem,
                           problem?.detail || `${method} ${target} answered ${res.status}`);
    }
    return json as T;
}

/** A text answer (the asciicast recording is JSON lines, not one JSON document). */
async function requestText(target: string, accept: string, signal?: AbortSignal): Promise<string> {
    let res: Response;
    try {
        res = await fetch(target, { headers: { Accept: accept, ...authHeaders() }, credentials: 'same-origin',
                                    ...(signal ? { signal } : {}) });
    } catch (e) {
        if (e instanceof DOMException && e.name === 'AbortError') throw e;
        throw new ApiError(0, null, 'The server cannot be reached. Is `ah webui` still running?');
    }
    noteStatus(res.status);
    const text = await res.text();
    if (!res.ok) {
        let problem: Problem | null = null;
        try { problem = JSON.parse(text) as Problem; } catch { /* not a Problem */ }
        throw new ApiError(res.status, problem, problem?.detail || `GET ${target} answered ${res.status}`);
    }
    return text;
}

export interface ListQuery {
    status?: SessionStatus | undefined;
    agent?: string | undefined;
    page?: number;
    perPage?: number;
}

export const api = {
    listSessions: (q: ListQuery, signal?: AbortSignal) =>
        request<SessionList>('GET', url<'/api/v1/sessions'>('/sessions', {}, {
            status: q.status, agent: q.agent, page: q.page, perPage: q.perPage }), undefined, signal),
    getSession: (id: string, signal?: AbortSignal) =>
        request<Session>('GET', url<'/api/v1/sessions/{id}'>('/sessions/{id}', { id }), undefined,
                         signal),
    pause: (id: string) =>
        request<ControlAccepted>('POST', url<'/api/v1/sessions/{id}/pause'>('/sessions/{id}/pause', { id }), {}),
    resume: (id: string) =>
        request<ControlAccepted>('POST', url<'/api/v1/sessions/{id}/resume'>('/sessions/{id}/resume', { id }), {}),
    stop: (id: string) =>
        request<ControlAccepted>('POST', url<'/api/v1/sessions/{id}/stop'>('/sessions/{id}/stop', { id }),
                                 {} satisfies Schemas['StopRequest']),
    cancel: (id: string) =>
        request<void>('DELETE', url<'/api/v1/sessions/{id}'>('/sessions/{id}', { id })),
    prompt: (id: string, text: string) =>
        request<Schemas['PromptAccepted']>('POST', url<'/api/v1/sessions/{id}/prompt'>('/sessions/{id}/prompt', { id }),
                                           { prompt: text } satisfies Schemas['PromptRequest']),
    createTask: (body: CreateTaskRequest, idempotencyKey?: string) =>
        request<CreateTaskResponse>('POST', url<'/api/v1/tasks'>('/tasks'), body, undefined,
                                    idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : {}),
    repos: () => request<RepositoryList>('GET', url<'/api/v1/repos'>('/repos', {}, { perPage: 200 })),
    branches: (id: string) =>
        request<Schemas['RepositoryBranches']>('GET', url<'/api/v1/repositories/{id}/branches'>(
            '/repositories/{id}/branches', { id })),
    agents: () => request<AgentCatalog>('GET', url<'/api/v1/agents'>('/agents')),
    runtimes: () => request<RuntimeCatalog>('GET', url<'/api/v1/runtimes'>('/runtimes')),
    drafts: () => request<DraftList>('GET', url<'/api/v1/drafts'>('/drafts', {}, { perPage: 50 })),
    createDraft: (body: DraftBody) =>
        request<Draft>('POST', url<'/api/v1/drafts'>('/drafts'), body),
    updateDraft: (id: string, body: DraftBody) =>
        request<Draft>('PUT', url<'/api/v1/drafts/{id}'>('/drafts/{id}', { id }), body),
    deleteDraft: (id: string) =>
        request<void>('DELETE', url<'/api/v1/drafts/{id}'>('/drafts/{id}', { id })),
    /** The terminal recording as asciicast v2 text (a header line, then [time, code, data]). */
    recording: (id: string, signal?: AbortSignal) =>
        requestText(url<'/api/v1/sessions/{id}/recording'>('/sessions/{id}/recording', { id }),
                    'application/x-asciicast', signal),
    /** The files changed since the session's base (default `to`: the live workspace). */
    files: (id: string, to: string | undefined, signal?: AbortSignal) =>
        request<FileChangeList>('GET', url<'/api/v1/sessions/{id}/files'>('/sessions/{id}/files', { id },
                                                                         { perPage: 200, to }), undefined, signal),
    /** One file's diff since the base, with the side-by-side rows (`split`) and the git text. */
    fileDiff: (id: string, path: string, to: string | undefined, signal?: AbortSignal) =>
        request<FileDiff>('GET', url<'/api/v1/sessions/{id}/diff/{filePath}'>('/sessions/{id}/diff/{filePath}',
                                                                             { id, filePath: path },
                                                                             { format: 'split', to }), undefined, signal),
    /** A file's text; `?path=` so that files named search, preview or content work too. */
    fileContent: (id: string, path: string, to: string | undefined, signal?: AbortSignal) =>
        request<FileContent>('GET', url<'/api/v1/sessions/{id}/files/content'>('/sessions/{id}/files/content',
                                                                              { id }, { path, to }), undefined, signal),
    /** One directory of the workspace and its entries (`path` '' is the root). */
    tree: (id: string, path: string, to: string | undefined, signal?: AbortSignal) =>
        request<WorkspaceNode>('GET', url<'/api/v1/sessions/{id}/workspace/files'>('/sessions/{id}/workspace/files',
                                                                                  { id }, { path, to }), undefined, signal),
    /** Moments and snapshots of the session, with its duration. */
    timeline: (id: string, signal?: AbortSignal) =>
        request<Timeline>('GET', url<'/api/v1/sessions/{id}/timeline'>('/sessions/{id}/timeline', { id }),
                          undefined, signal),
    /** A read-only view of the workspace at one point (a time, an event or a snapshot). */
    seek: (id: string, body: SeekRequest) =>
        request<SeekResult>('POST', url<'/api/v1/sessions/{id}/seek'>('/sessions/{id}/seek', { id }), body),
    addMoment: (id: string, label: string) =>
        request<Schemas['MomentCreated']>('POST', url<'/api/v1/sessions/{id}/moments'>('/sessions/{id}/moments', { id }),
                                          { label, type: 'milestone' } satisfies Schemas['MomentRequest']),
    /** A new session from a snapshot of this one (its workspace and history up to there). */
    branch: (id: string, body: BranchBody) =>
        request<Schemas['BranchCreated']>('POST', url<'/api/v1/sessions/{id}/session-branch'>('/sessions/{id}/session-branch', { id }), body),
    sessionBranches: (id: string, signal?: AbortSignal) =>
        request<Schemas['BranchList']>('GET', url<'/api/v1/sessions/{id}/branches'>('/sessions/{id}/branches', { id }),
                                       undefined, signal),
    takeSnapshot: (id: string, label: string) =>
        request<Schemas['FsSnapshotCreated']>('POST', url<'/api/v1/sessions/{id}/fs-snapshots'>('/sessions/{id}/fs-snapshots', { id }),
                                              (label ? { label } : {}) satisfies Schemas['SnapshotRequest']),
    ptyUrl: (id: string) => url<'/api/v1/sessions/{id}/pty'>('/sessions/{id}/pty', { id }),
    eventsUrl: (id: string, query: Record<string, string | number | undefined> = {}) =>
        url<'/api/v1/sessions/{id}/events'>('/sessions/{id}/events', { id }, query),
};

/** What this browser's session cookie stands for, and which identity provider the sign-in page
 *  offers (public: answers without credentials). */
export function getAuthSession(): Promise<AuthSession> {
    return request<AuthSession>('GET', url('/auth/session'));
}

/** Signs the cookie session out (the CSRF token goes with it); names the provider's
 *  end-session page when the server does RP-initiated logout. */
export function logoutSession(): Promise<{ status: 'signedOut'; endSessionUrl?: string }> {
    return request('POST', url('/auth/logout'));
}
