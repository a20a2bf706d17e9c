// Session.tsx — one session: its header and controls, the prompt box, and the whole event log,
// live. The log is virtualised (only the rows in view exist in the DOM), so a session with
// 100,000 events scrolls as smoothly as one with ten.
import type { JSX } from 'preact';
import { memo } from 'preact/compat';
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { ACTIVE, ApiError, TERMINAL, api, type AgentEvent, type Session as SessionT,
         type SessionStatus } from '../api';
import { describe, useLiveLog } from '../events';
import { Link, StatusBadge, Time, navigate, toast, toastError, typing, useKeys } from '../ui';
import { Controls, repoLabel } from './Feed';
import { FilesView } from './Files';
import { TerminalView } from './Terminal';
import { TimelineView } from './Timeline';

const ROW = 28; /* px: every row has the same height, so a scroll offset maps to an index */
const OVERSCAN = 10;

export function SessionPage(props: { id: string }): JSX.Element {
    const [session, setSession] = useState<SessionT | null>(null);
    const [missing, setMissing] = useState<string | null>(null);
    const [tab, setTab] = useState<'events' | 'terminal' | 'files' | 'timeline'>('events');
    const reload = () => {
        api.getSession(props.id).then(setSession, (e) => {
            if (e instanceof ApiError && e.status === 404) setMissing(e.message);
            else toastError(e, 'Loading the session');
        });
    };
    useEffect(reload, [props.id]);
    const log = useLiveLog(props.id, () => reload());
    const status: SessionStatus | undefined = log.status ?? session?.status;

    useKeys((e) => {
        if (e.key === 'Escape' && !typing(e) && !document.querySelector('.event-detail')) navigate('/');
    }, []);

    if (missing) {
        return <section class="session"><p class="notice error" role="alert">{missing}</p>
            <Link href="/">Back to the sessions</Link></section>;
    }
    const title = session?.prompt.split('\n')[0] ?? '';
    return (
        <section class="session" aria-labelledby="session-title">
            <div class="session-head">
                <Link href="/" class="back" aria-label="Back to the sessions (Esc)">←</Link>
                <h1 id="session-title" title={session?.prompt}>{title || props.id}</h1>
                {status && <StatusBadge status={status} />}
                <span class={`conn conn-${log.state}`} aria-live="polite">{stateLabel(log.state)}</span>
            </div>
            {session && (
                <dl class="session-meta">
                    <div><dt>Agent</dt><dd>{session.agent.type} {session.agent.version}</dd></div>
                    <div><dt>Repository</dt><dd>{repoLabel(session)}</dd></div>
                    <div><dt>Runtime</dt><dd>{session.runtime.type}</dd></div>
                    <div><dt>Created</dt><dd><Time iso={session.createdAt} /></dd></div>
                    {session.endedAt && <div><dt>Ended</dt><dd><Time iso={session.endedAt} /></dd></div>}
                    {session.error && <div class="wide"><dt>Error</dt><dd class="error">{session.error}</dd></div>}
                    <div class="wide"><dt>Session</dt><dd><code>{session.id}</code></dd></div>
                </dl>
            )}
            {session && status && (
                <Controls session={session} status={status} onChanged={() => reload()} />
            )}
            {log.error && <p class="notice error" role="alert">{log.error.message}</p>}
            <div class="tabs" role="tablist" aria-label="Session views">
                <button type="button" role="tab" id="tab-events" aria-selected={tab === 'events'}
                        aria-controls="panel" onClick={() => setTab('events')}>Events</button>
                <button type="button" role="tab" id="tab-terminal" aria-selected={tab === 'terminal'}
                        aria-controls="panel" onClick={() => setTab('terminal')}>Terminal</button>
                <button type="button" role="tab" id="tab-files" aria-selected={tab === 'files'}
                        aria-controls="panel" onClick={() => setTab('files')}>Files</button>
                <button type="button" role="tab" id="tab-timeline" aria-selected={tab === 'timeline'}
                        aria-controls="panel" onClick={() => setTab('timeline')}>Timeline</button>
            </div>
            <div id="panel" role="tabpanel" aria-labelledby={`tab-${tab}`}>
                {tab === 'events' ? <EventLog events={log.events} version={log.version} />
                    : tab === 'terminal' ? <TerminalView id={props.id} ended={!!status && TERMINAL.has(status)} />
                    : tab === 'files' ? <FilesView id={props.id} changeSeq={log.changeSeq} />
                    : <TimelineView id={props.id} timelineSeq={log.timelineSeq} active={!!status && ACTIVE.has(status)} />}
            </div>
            {session && status && ACTIVE.has(status) && <PromptBox id={session.id} />}
            {session && status && TERMINAL.has(status) && (
                <p class="notice">This session has ended{session.exitCode !== null ? ` (exit code ${session.exitCode})` : ''}.</p>
            )}
        </section>
    );
}

function stateLabel(s: string): string {
    switch (s) {
    case 'live': return '● live';
    case 'connecting': return 'connecting…';
    case 'reconnecting': return 'reconnecting…';
    case 'ended': return 'complete';
    default: return 'not following';
    }
}

function PromptBox(props: { id: string }): JSX.Element {
    const [text, setText] = useState('');
    const [sending, setSending] = useState(false);
    const send = async () => {
        if (!text.trim() || sending) return;
        setSending(true);
        try {
            await api.prompt(props.id, text);
            setText('');
            toast('Prompt sent');
        } catch (e) {
            toastError(e, 'Sending the prompt');
        } finally {
            setSending(false);
        }
    };
    return (
        <form class="prompt-box" onSubmit={(e) => { e.preventDefault(); void send(); }}>
            <textarea rows={2} value={text} aria-label="Prompt the agent" placeholder="Tell the agent more… (Ctrl+Enter sends)"
                      onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
                      onKeyDown={(e) => {
                          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); void send(); }
                          else if (e.key === 'Escape') (e.target as HTMLElement).blur();
                      }} />
            <button type="submit" class="primary" disabled={sending || !text.trim()}>Send</button>
        </form>
    );
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

/** One row of the log. Memoised: scrolling re-renders only the rows that come into view. */
const Row = memo(function Row(props: { ev: AgentEvent; index: number; selected: boolean;
                                       onPick: (i: number, ev: AgentEvent) => void }): JSX.Element {
    const { ev, index: i } = props;
    const d = describe(ev);
    const ts = 'ts' in ev && typeof ev.ts === 'string' ? timeFormat.format(new Date(ev.ts)) : '';
    return (
        <div role="row" aria-rowindex={i + 1} aria-selected={props.selected} data-seq={ev.seq}
             class={`log-row kind-${d.kind}${props.selected ? ' selected' : ''}`}
             style={{ transform: `translateY(${i * ROW}px)` }} onClick={() => props.onPick(i, ev)}>
            <span class="seq" role="cell">{ev.seq}</span>
            <span class="kind" role="cell">{d.kind}</span>
            <span class="text" role="cell">{d.text}</span>
            <span class="ts" role="cell">{ts}</span>
        </div>
    );
});

/** The virtualised log: j/k move the selection, Enter shows the selected event in full. */
function EventLog(props: { events: readonly AgentEvent[]; version: number }): JSX.Element {
    const box = useRef<HTMLDivElement>(null);
    const [top, setTop] = useState(0);
    const [height, setHeight] = useState(600);
    const [selected, setSelected] = useState(-1);
    const [detail, setDetail] = useState<AgentEvent | null>(null);
    const follow = useRef(true);
    const n = props.events.length;

    useLayoutEffect(() => {
        const el = box.current;
        if (!el) return undefined;
        const ro = new ResizeObserver(() => setHeight(el.clientHeight));
        ro.observe(el);
        setHeight(el.clientHeight);
        return () => ro.disconnect();
    }, []);
    // New events: stay at the bottom while the reader is there (follow mode).
    useLayoutEffect(() => {
        const el = box.current;
        if (el && follow.current) el.scrollTop = el.scrollHeight;
    }, [props.version]);

    const onScroll = () => {
        const el = box.current;
        if (!el) return;
        setTop(el.scrollTop);
        follow.current = el.scrollTop + el.clientHeight >= el.scrollHeight - ROW;
    };

    useKeys((e) => {
        if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
        if (e.key === 'j' || e.key === 'k') {
            e.preventDefault();
            const next = e.key === 'j' ? Math.min(selected + 1, n - 1) : Math.max(selected < 0 ? n - 1 : selected - 1, 0);
            setSelected(next);
            const el = box.current;
            if (el) {
                if (next * ROW < el.scrollTop) el.scrollTop = next * ROW;
                else if ((next + 1) * ROW > el.scrollTop + el.clientHeight) el.scrollTop = (next + 1) * ROW - el.clientHeight;
            }
        } else if (e.key === 'Enter' && selected >= 0) {
            e.preventDefault();
            setDetail(props.events[selected] ?? null);
        } else if (e.key === 'Escape' && detail) {
            e.preventDefault();
            setDetail(null);
        }
    }, [selected, n, detail, props.version]);

    const pick = useCallback((i: number, ev: AgentEvent) => { setSelected(i); setDetail(ev); }, []);
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(n, Math.ceil((top + height) / ROW) + OVERSCAN);
    const rows: JSX.Element[] = [];
    for (let i = first; i < last; i++) {
        const ev = props.events[i]!;
        rows.push(<Row key={ev.seq} ev={ev} index={i} selected={i === selected} onPick={pick} />);
    }
    return (
        <div class="event-log-wrap">
            <div class="event-log" ref={box} onScroll={onScroll} role="grid" aria-rowcount={n}
                 aria-label={`Event log, ${n} events (j/k to move, Enter for details)`} tabIndex={0}>
                <div class="spacer" style={{ height: `${n * ROW}px` }}>{rows}</div>
                {n === 0 && <p class="empty">No events yet.</p>}
            </div>
            {detail && (
                <div class="event-detail" role="dialog" aria-label={`Event ${detail.seq}`}>
                    <div class="toolbar">
                        <strong>Event {detail.seq} · {detail.type}</strong>
                        <button type="button" class="icon" aria-label="Close details (Esc)" onClick={() => setDetail(null)}>×</button>
                    </div>
                    <pre>{JSON.stringify(detail, null, 2)}</pre>
                </div>
            )}
        </div>
    );
}
