// sse.ts — a session's event stream over fetch (not EventSource): it resumes with Last-Event-ID
// after a dropped connection or a server restart, hands each event on once (de-duplicated by its
// per-session `seq`, D9), and stops for good when the session has ended (terminal status seen,
// or the server answers 204 for a stream with nothing more to come). fetch rather than
// EventSource because EventSource reconnects by itself forever after a stream closes and cannot
// tell "ended" from "dropped".
//
// The `event:` line is not used to classify events: servers name them `thinking`,
// `tool_execution`, … (D26) or by type; the data always carries `type`, which is what we read.
import { ApiError, TERMINAL, api, type AgentEvent, type Problem, type SessionStatus } from './api';
import { authHeaders, noteStatus } from './auth';

export type StreamState = 'connecting' | 'live' | 'reconnecting' | 'ended' | 'failed';

export interface StreamOptions {
    /** Start with the last N events only (cards); default: from the beginning. */
    tail?: number;
    onEvent(ev: AgentEvent): void;
    onState?(state: StreamState, error?: ApiError): void;
}

const MIN_DELAY = 250, MAX_DELAY = 5000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
        const t = setTimeout(resolve, ms);
        signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
}

/** Incremental text/event-stream parser (WHATWG HTML §9.2.6): feed it chunks of text. */
export class SseParser {
    private buf = '';
    private skipLF = false;
    private data: string[] = [];
    private id: string | null = null;
    private event = '';
    constructor(private readonly dispatch: (data: string, id: string | null, event: string) => void) {}

    push(chunk: string): void {
        if (!chunk) return;
        // A chunk that ended in \r may have split a \r\n: its \n is not a second line end.
        if (this.skipLF && chunk.startsWith('\n')) chunk = chunk.slice(1);
        this.skipLF = false;
        this.buf += chunk;
        for (;;) {
            const m = /\r\n|\r|\n/.exec(this.buf);
            if (!m) break;
            if (m[0] === '\r' && m.index === this.buf.length - 1) this.skipLF = true;
            const line = this.buf.slice(0, m.index);
            this.buf = this.buf.slice(m.index + m[0].length);
            this.line(line);
        }
    }

    private line(line: string): void {
        if (line === '') {
            if (this.data.length) this.dispatch(this.data.join('\n'), this.id, this.event || 'message');
            this.data = [];
            this.event = '';
            return;
        }
        if (line.startsWith(':')) return; /* a comment: the keep-alive */
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') this.data.push(value);
        else if (field === 'id' && !value.includes('\0')) this.id = value;
        else if (field === 'event') this.event = value;
    }
}

/** Follows one session's events until closed or the session ends. */
export class EventStream {
    private lastSeq = 0;
    private terminal = false;
    private readonly ctrl = new AbortController();

    constructor(private readonly sessionId: string, private readonly opts: StreamOptions) {
        void this.run();
    }

    close(): void {
        this.ctrl.abort();
    }

    /** The highest `seq` handed on so far. */
    get seq(): number {
        return this.lastSeq;
    }

    private state(s: StreamState, e?: ApiError): void {
        if (!this.ctrl.signal.aborted) this.opts.onState?.(s, e);
    }

    private async run(): Promise<void> {
        let delay = MIN_DELAY;
        const signal = this.ctrl.signal;
        this.state('connecting');
        while (!signal.aborted) {
            try {
                const headers: Record<string, string> = { Accept: 'text/event-stream', ...authHeaders() };
                const query: Record<string, number | undefined> = {};
                if (this.lastSeq > 0) headers['Last-Event-ID'] = String(this.lastSeq);
                else if (this.opts.tail) query['tail'] = this.opts.tail;
                const res = await fetch(api.eventsUrl(this.sessionId, query),
                                        { headers, signal, cache: 'no-store', credentials: 'same-origin' });
                noteStatus(res.status);
                if (res.status === 204) { /* the session ended and we have everything */
                    this.state('ended');
                    return;
                }
                if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
                    let problem: Problem | null = null;
                    try { problem = await res.json() as Problem; } catch { /* not JSON */ }
                    this.state('failed', new ApiError(res.status, problem,
                        problem?.detail ?? `the event stream answered ${res.status}`));
                    return;
                }
                if (!res.ok || !res.body) throw new Error(`status ${res.status}`);
                this.state('live');
                delay = MIN_DELAY;
                await this.read(res.body);
                if (this.terminal) {
                    this.state('ended');
                    return;
                }
            } catch (e) {
                if (signal.aborted) return;
                /* dropped or refused (a server restart): resume below */
            }
            this.state('reconnecting');
            await sleep(delay, signal);
            delay = Math.min(delay * 2, MAX_DELAY);
        }
    }

    private async read(body: ReadableStream<Uint8Array>): Promise<void> {
        const reader = body.getReader();
        const decoder = new TextDecoder();
        const parser = new SseParser((data) => this.frame(data));
        try {
            for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                parser.push(decoder.decode(value, { stream: true }));
            }
        } finally {
            reader.releaseLock();
        }
    }

    private frame(data: string): void {
        let ev: AgentEvent;
        try {
            ev = JSON.parse(data) as AgentEvent;
        } catch {
            return; /* not an event: ignore rather than break the stream */
        }
        if (typeof ev !== 'object' || ev === null || typeof ev.seq !== 'number') return;
        if (ev.seq <= this.lastSeq) return; /* already handed on (a resume overlapped) */
        this.lastSeq = ev.seq;
        if (ev.type === 'status' && TERMINAL.has(ev.status as SessionStatus)) this.terminal = true;
        this.opts.onEvent(ev);
    }
}
