// Session.tsx — one session: its header and controls, the prompt box, and the whole event log,
// live. The log is virtualised (only the rows in view exist in the DOM), so a session with
// 100,000 events scrolls as smoothly as one with ten.
import type { JSX } from 'preact';
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { ACTIVE, ApiError, TERMINAL, api, type AgentEvent, type Session as SessionT,
         type SessionStatus } from '../api';
import { useLiveLog } from '../events';
import { LogRows, ROW } from '../logrows';
import { Link, StatusBadge, Time, navigate, toast, toastError, typing, useKeys } from '../ui';
import { Controls, repoLabel } from './Feed';
import { FilesView } from './Files';
import { TerminalView } from './Terminal';
import { TimelineView } from './Timeline';

const OVERSCAN = 6; /* rows drawn above and below the view */

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

/** The virtualised log (rows by LogRows): j/k move the selection, Enter shows the selected event. */
function EventLog(props: { events: readonly AgentEvent[]; version: number }): JSX.Element {
    const box = useRef<HTMLDivElement>(null);
    const block = useRef<HTMLDivElement>(null); /* the spacer: LogRows keeps its children */
    const pool = useRef<LogRows | null>(null);
    const [height, setHeight] = useState(600);
    const [selected, setSelected] = useState(-1);
    const [detail, setDetail] = useState<AgentEvent | null>(null);
    const follow = useRef(true);
    const n = props.events.length;
    /* what scrolling needs, without re-rendering: read by the scroll listener */
    const view = useRef({ events: props.events, height, selected, first: -1 });
    view.current.events = props.events;
    view.current.height = height;
    view.current.selected = selected;

    /* the rows from the scroll offset: only a scroll offset is read, nothing measured */
    const draw = useCallback((force: boolean) => {
        const el = box.current, rows = pool.current;
        if (!el || !rows) return;
        const v = view.current, top = el.scrollTop, total = v.events.length;
        follow.current = top + v.height >= total * ROW - ROW;
        const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
        if (!force && first === v.first) return;
        v.first = first;
        rows.render(v.events, first, Math.ceil(v.height / ROW) + 1 + 2 * OVERSCAN, v.selected);
    }, []);

    useLayoutEffect(() => {
        const el = box.current;
        if (!el || !block.current) return undefined;
        pool.current = new LogRows(block.current);
        const ro = new ResizeObserver(() => setHeight(el.clientHeight));
        ro.observe(el);
        setHeight(el.clientHeight);
        // Rows go back into DOM order once the scrolling stopped: no scroll event for 150 ms.
        // (Not 'scrollend': a script's scroll, as a key's, ends at once, every frame.)
        let timer = 0;
        const settle = () => { timer = 0; pool.current?.settle(); };
        const onScroll = () => {
            draw(false);
            clearTimeout(timer);
            timer = window.setTimeout(settle, 150);
        };
        el.addEventListener('scroll', onScroll, { passive: true });
        return () => {
            ro.disconnect();
            clearTimeout(timer);
            el.removeEventListener('scroll', onScroll);
        };
    }, [draw]);
    // New events, a new size or selection: redraw; stay at the bottom while the reader is there.
    useLayoutEffect(() => {
        const el = box.current;
        if (el && follow.current) el.scrollTop = n * ROW;
        draw(true);
        pool.current?.settle();
    }, [props.version, height, selected, draw, n]);

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

    const onClick = (e: MouseEvent) => {
        const row = (e.target as HTMLElement).closest('.log-row');
        const i = row ? Number(row.getAttribute('aria-rowindex')) - 1 : -1;
        const ev = props.events[i];
        if (ev) { setSelected(i); setDetail(ev); }
    };
    return (
        <div class="event-log-wrap">
            <div class="event-log" ref={box} onClick={onClick} role="grid" aria-rowcount={n}
                 aria-label={`Event log, ${n} events (j/k to move, Enter for details)`} tabIndex={0}>
                <div class="spacer" ref={block} style={{ height: `${n * ROW}px` }} />
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
