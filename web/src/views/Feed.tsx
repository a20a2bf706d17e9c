// Feed.tsx — sessions newest first: status filter, search, paging, and a card per session whose
// status and last activity rows follow the session live.
import type { JSX } from 'preact';
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ACTIVE, ALL_STATUSES, TERMINAL, api, type AgentEvent, type Session, type SessionList,
         type SessionStatus } from '../api';
import { describe } from '../events';
import { EventStream } from '../sse';
import { Link, StatusBadge, Time, navigate, toast, toastError, typing, useKeys } from '../ui';

const PER_PAGE = 20;
/** Cards that follow their session over SSE. The rest refresh with the list: a browser opens at
 *  most 6 HTTP/1.1 connections to one origin, and the page needs some for its own requests. */
const LIVE_CARDS = 4;
const REFRESH_MS = 3000;

export function Feed(props: { query: URLSearchParams }): JSX.Element {
    const status = (props.query.get('status') || '') as SessionStatus | '';
    const page = Math.max(1, Number(props.query.get('page')) || 1);
    const [search, setSearch] = useState(props.query.get('q') || '');
    const [list, setList] = useState<SessionList | null>(null);
    const [failed, setFailed] = useState<string | null>(null);
    const searchRef = useRef<HTMLInputElement>(null);
    const listRef = useRef<HTMLUListElement>(null);

    const load = useCallback(async (signal?: AbortSignal) => {
        try {
            const l = await api.listSessions({ status: status || undefined, page, perPage: PER_PAGE },
                                             signal);
            setList(l);
            setFailed(null);
        } catch (e) {
            if (e instanceof DOMException && e.name === 'AbortError') return;
            setFailed(e instanceof Error ? e.message : String(e));
        }
    }, [status, page]);

    useEffect(() => {
        const ctrl = new AbortController();
        void load(ctrl.signal);
        const t = setInterval(() => {
            if (document.visibilityState === 'visible') void load(ctrl.signal);
        }, REFRESH_MS);
        return () => { ctrl.abort(); clearInterval(t); };
    }, [load]);

    const setQuery = (changes: Record<string, string>) => {
        const q = new URLSearchParams(props.query);
        for (const [k, v] of Object.entries(changes)) {
            if (v) q.set(k, v);
            else q.delete(k);
        }
        const s = q.toString();
        navigate(s ? `/?${s}` : '/', true);
    };

    const shown = useMemo(() => {
        const items = list?.items ?? [];
        const needle = search.trim().toLowerCase();
        if (!needle) return items;
        return items.filter((s) => [s.id, s.prompt, s.agent.type, s.repo.url ?? '', s.repo.branch ?? '',
                                    s.status].some((f) => f.toLowerCase().includes(needle)));
    }, [list, search]);
    const liveIds = useMemo(() => new Set(shown.filter((s) => ACTIVE.has(s.status)).slice(0, LIVE_CARDS)
                                              .map((s) => s.id)), [shown]);

    // j/k move between cards, Enter opens one, / searches, n starts a new task.
    useKeys((e) => {
        if (e.ctrlKey || e.metaKey || e.altKey) return;
        if (typing(e)) {
            if (e.key === 'Escape' && e.target === searchRef.current) {
                setSearch('');
                searchRef.current?.blur();
            }
            return;
        }
        const cards = Array.from(listRef.current?.querySelectorAll<HTMLElement>('.card') ?? []);
        const at = cards.findIndex((c) => c === document.activeElement || c.contains(document.activeElement));
        if (e.key === 'j' || e.key === 'k') {
            e.preventDefault();
            const next = e.key === 'j' ? Math.min(at + 1, cards.length - 1) : Math.max(at - 1, 0);
            cards[next]?.focus();
            cards[next]?.scrollIntoView({ block: 'nearest' });
        } else if (e.key === 'Enter' && at >= 0 && document.activeElement === cards[at]) {
            e.preventDefault();
            navigate(`/sessions/${cards[at]!.dataset['id']}`);
        } else if (e.key === '/') {
            e.preventDefault();
            searchRef.current?.focus();
        } else if (e.key === 'n') {
            e.preventDefault();
            navigate('/new');
        }
    }, [shown]);

    const pages = list?.pagination?.totalPages ?? (list ? Math.ceil(list.total / list.perPage) : 0);
    return (
        <section class="feed" aria-labelledby="feed-title">
            <div class="toolbar">
                <h1 id="feed-title">Sessions</h1>
                <input ref={searchRef} type="search" class="search" placeholder="Search this page  ( / )"
                       aria-label="Search sessions" value={search}
                       onInput={(e) => setSearch((e.target as HTMLInputElement).value)} />
                <select aria-label="Filter by status" value={status}
                        onChange={(e) => setQuery({ status: (e.target as HTMLSelectElement).value, page: '' })}>
                    <option value="">All statuses</option>
                    {ALL_STATUSES.map((s) => <option key={s} value={s}>{s}</option>)}
                </select>
                <Link href="/new" class="button primary" aria-label="New task (n)">New task</Link>
            </div>
            {failed && <p class="notice error" role="alert">Cannot load the sessions: {failed}</p>}
            {list && shown.length === 0 && (
                <div class="empty">
                    {list.total === 0 && !status
                        ? <p>No sessions yet. <Link href="/new">Launch a task</Link> to start one.</p>
                        : <p>No session matches.</p>}
                </div>
            )}
            <ul class="cards" ref={listRef} aria-label="Sessions, newest first">
                {shown.map((s) => <SessionCard key={s.id} session={s} live={liveIds.has(s.id)}
                                               onChanged={() => void load()} />)}
            </ul>
            {pages > 1 && (
                <nav class="pager" aria-label="Pages">
                    <button type="button" disabled={page <= 1}
                            onClick={() => setQuery({ page: String(page - 1) })}>Newer</button>
                    <span>Page {page} of {pages}</span>
                    <button type="button" disabled={page >= pages}
                            onClick={() => setQuery({ page: String(page + 1) })}>Older</button>
                </nav>
            )}
        </section>
    );
}

/** The last activity rows of a card: live over SSE when `live`, else the list's recent_events. */
function useActivity(session: Session, live: boolean,
                     onStatus: (s: SessionStatus) => void): readonly AgentEvent[] {
    const [rows, setRows] = useState<readonly AgentEvent[]>([]);
    useEffect(() => {
        if (!live) return undefined;
        let acc: AgentEvent[] = [];
        const stream = new EventStream(session.id, {
            tail: 3,
            onEvent(ev) {
                if (ev.type === 'status') onStatus(ev.status);
                acc = [...acc, ev].slice(-3);
                setRows(acc);
            },
        });
        return () => stream.close();
        // eslint-disable-next-line react-hooks/exhaustive-deps
    }, [session.id, live]);
    const fromList = session.recent_events ?? [];
    if (!live || rows.length === 0) return fromList;
    // The list may be newer than the stream right after a refresh: show whichever is further.
    const lastList = fromList[fromList.length - 1]?.seq ?? 0;
    const lastLive = rows[rows.length - 1]?.seq ?? 0;
    return lastList > lastLive ? fromList : rows;
}

type Action = 'pause' | 'resume' | 'stop' | 'cancel';

export function actionsFor(status: SessionStatus): Action[] {
    switch (status) {
    case 'running': return ['pause', 'stop', 'cancel'];
    case 'paused': return ['resume', 'stop', 'cancel'];
    case 'queued': case 'provisioning': case 'pausing': case 'resuming': case 'stopping':
        return ['cancel'];
    default: return [];
    }
}

const LABELS: Record<Action, string> = { pause: 'Pause', resume: 'Resume', stop: 'Stop', cancel: 'Cancel' };

export async function runAction(id: string, a: Action): Promise<SessionStatus | null> {
    if (a === 'cancel') {
        await api.cancel(id);
        return 'cancelled';
    }
    const r = await api[a](id);
    return r.status;
}

export function Controls(props: { session: Session; status: SessionStatus;
                                  onChanged: (s: SessionStatus | null) => void }): JSX.Element | null {
    const [busy, setBusy] = useState<Action | null>(null);
    const acts = actionsFor(props.status);
    if (!acts.length) return null;
    const run = async (a: Action) => {
        if (a === 'cancel' && !window.confirm('Cancel this session? Its agent is killed and its workspace removed.'))
            return;
        setBusy(a);
        try {
            const s = await runAction(props.session.id, a);
            toast(`${LABELS[a]}: the session is ${s}`);
            props.onChanged(s);
        } catch (e) {
            toastError(e, `${LABELS[a]} failed`);
        } finally {
            setBusy(null);
        }
    };
    return (
        <div class="controls" role="group" aria-label="Session controls">
            {acts.map((a) => (
                <button key={a} type="button" class={`ctl ctl-${a}`} disabled={busy !== null}
                        aria-label={`${LABELS[a]} session ${props.session.id}`}
                        onClick={(e) => { e.stopPropagation(); void run(a); }}>
                    {busy === a ? `${LABELS[a]}…` : LABELS[a]}
                </button>
            ))}
        </div>
    );
}

export function repoLabel(s: Session): string {
    if (s.repo.mode === 'none') return 'no repository';
    if (s.repo.mode === 'upload') return 'uploaded files';
    const name = (s.repo.url ?? '').replace(/\.git$/, '').split(/[/:]/).filter(Boolean).slice(-2).join('/');
    return s.repo.branch ? `${name} @ ${s.repo.branch}` : name;
}

function SessionCard(props: { session: Session; live: boolean; onChanged: () => void }): JSX.Element {
    const s = props.session;
    const [status, setStatus] = useState<SessionStatus>(s.status);
    useEffect(() => setStatus(s.status), [s.status]);
    const rows = useActivity(s, props.live, (st) => {
        setStatus(st);
        if (TERMINAL.has(st)) props.onChanged();
    });
    const open = () => navigate(`/sessions/${s.id}`);
    const title = s.prompt.split('\n')[0] ?? '';
    return (
        <li class="card" tabIndex={0} data-id={s.id} data-status={status}
            aria-label={`Session ${title}, ${status}`}
            onClick={(e) => { if (!(e.target as HTMLElement).closest('button, a')) open(); }}>
            <div class="card-head">
                <StatusBadge status={status} />
                <Link href={`/sessions/${s.id}`} class="card-title" tabIndex={-1}>{title || s.id}</Link>
                <Time iso={s.createdAt} />
            </div>
            <div class="card-meta">
                <span class="agent" title="Agent">{s.agent.type}{s.agent.version && s.agent.version !== 'latest' ? ` ${s.agent.version}` : ''}</span>
                <span class="repo" title="Repository">{repoLabel(s)}</span>
                {props.live && <span class="live" title="Following live">● live</span>}
                {TERMINAL.has(status) && s.endedAt && <Time iso={s.endedAt} prefix="ended " />}
            </div>
            {s.error && TERMINAL.has(status) && <p class="card-error">{s.error}</p>}
            {rows.length > 0 && (
                <ol class="activity" aria-label="Last activity">
                    {rows.map((ev) => {
                        const d = describe(ev);
                        return <li key={ev.seq} data-seq={ev.seq} class={`row kind-${d.kind}`}>
                            <span class="kind">{d.kind}</span><span class="text">{d.text}</span></li>;
                    })}
                </ol>
            )}
            <Controls session={s} status={status} onChanged={(st) => { if (st) setStatus(st); props.onChanged(); }} />
        </li>
    );
}
