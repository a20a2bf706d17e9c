// events.ts — the live event store of a session page, and how an event reads as one line.
import { useEffect, useState } from 'preact/hooks';
import type { AgentEvent, SessionStatus } from './api';
import { EventStream, type StreamState } from './sse';
import type { ApiError } from './api';

/** One line of text for an event, and a short kind label for its row. */
export function describe(ev: AgentEvent): { kind: string; text: string } {
    const e = ev as AgentEvent & Record<string, unknown>;
    const str = (k: string) => (typeof e[k] === 'string' ? e[k] as string : '');
    switch (ev.type) {
    case 'status':
        return { kind: 'status', text: `${ev.status}${ev.error ? ` — ${ev.error}` : ''}` };
    case 'log':
        return { kind: ev.level === 'error' ? 'error' : 'log', text: ev.message };
    case 'thought':
        return { kind: 'thought', text: ev.thought };
    case 'chat_message': // the chat (user messages and the agent's replies)
        return { kind: ev.role === 'user' ? 'you' : 'agent', text: str('content') };
    case 'tool_use': {
        // A running tool's progress repeats the tool_use with its `last_line` (D26), no args.
        const detail = str('last_line') || (e['tool_args'] ? JSON.stringify(e['tool_args']) : '');
        return { kind: 'tool', text: `${str('tool_name')} ${detail}`.trim() };
    }
    case 'tool_result':
        return { kind: 'result', text: `${str('tool_name')}: ${str('tool_output')}`.trim() };
    case 'file_edit':
        return { kind: 'edit', text: `${ev.file_path}  +${ev.lines_added} −${ev.lines_removed}` };
    case 'diff':
        return { kind: 'diff', text: str('path') };
    default:
        return { kind: String(ev.type), text: str('message') || str('note') || str('host') ||
                 JSON.stringify(ev) };
    }
}

const TIMELINE_TYPES: ReadonlySet<string> = new Set(['tool_result', 'file_edit', 'diff', 'moment', 'status']);

export interface LiveLog {
    events: readonly AgentEvent[];
    /** Bumped when events were added (the array is appended to in place). */
    version: number;
    state: StreamState;
    error: ApiError | undefined;
    /** The status from the newest status event, when one arrived. */
    status: SessionStatus | undefined;
    /** The seq of the newest file_edit or diff event (0: none yet): the files view reloads on it. */
    changeSeq: number;
    /** The seq of the newest event that may change the timeline (a tool's end, a snapshot's
     *  changes, a moment, a status): the timeline view reloads on it. */
    timelineSeq: number;
}

/**
 * Follows a session's events from the beginning. The array grows in place and re-renders are
 * batched to one per animation frame, so a burst of thousands of events costs a few renders.
 */
export function useLiveLog(sessionId: string, onStatus?: (s: SessionStatus) => void): LiveLog {
    const [log, setLog] = useState<LiveLog>(() => ({
        events: [], version: 0, state: 'connecting', error: undefined, status: undefined, changeSeq: 0, timelineSeq: 0 }));
    useEffect(() => {
        const events: AgentEvent[] = [];
        let status: SessionStatus | undefined;
        let state: StreamState = 'connecting';
        let error: ApiError | undefined;
        let frame = 0, version = 0, changeSeq = 0, timelineSeq = 0;
        const flush = () => {
            frame = 0;
            setLog({ events, version: ++version, state, error, status, changeSeq, timelineSeq });
        };
        const schedule = () => {
            if (!frame) frame = requestAnimationFrame(flush);
        };
        setLog({ events, version: 0, state, error, status, changeSeq, timelineSeq });
        const stream = new EventStream(sessionId, {
            onEvent(ev) {
                events.push(ev);
                if (ev.type === 'file_edit' || ev.type === 'diff') changeSeq = ev.seq;
                if (TIMELINE_TYPES.has(ev.type)) timelineSeq = ev.seq;
                if (ev.type === 'status') {
                    status = ev.status;
                    onStatus?.(ev.status);
                }
                schedule();
            },
            onState(s, e) {
                state = s;
                error = e;
                schedule();
            },
        });
        return () => {
            stream.close();
            if (frame) cancelAnimationFrame(frame);
        };
        // onStatus is a callback the caller may re-create each render: the stream keeps the first.
        // eslint-disable-next-line react-hooks/exhaustive-deps
    }, [sessionId]);
    return log;
}
