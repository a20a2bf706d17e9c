// Terminal.tsx — the session's terminal, live: the PTY stream (its backlog, then live output)
// drawn by terminal.ts. A dropped stream is opened again and the screen redrawn from the
// backlog, so nothing is shown twice.
import type { JSX } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api';
import { authHeaders, noteStatus } from '../auth';
import { toastError } from '../ui';
import { SseParser } from '../sse';
import { Screen, runs } from '../terminal';

interface PtyFrame {
    type: string;
    encoding?: string;
    data?: string;
    cols?: number;
    rows?: number;
}

function decodeBase64(b64: string): Uint8Array {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
}

function label(state: string, ended: boolean): string {
    switch (state) {
    case 'live': return ended ? 'recording complete' : '● live';
    case 'ended': return 'recording complete';
    case 'replaying': return 'replaying…';
    case 'replayed': return 'replay finished';
    default: return `${state}…`;
    }
}

/** The lines up to the last one with text: a fresh screen's empty rows would push the output
 *  out of view of a log that follows its end. */
function shown<T>(lines: readonly (readonly T[])[]): (readonly T[])[] {
    let n = lines.length;
    while (n > 0 && lines[n - 1]!.length === 0) n--;
    return lines.slice(0, n);
}

export function TerminalView(props: { id: string; ended: boolean }): JSX.Element {
    const [screen] = useState(() => new Screen());
    const [, setVersion] = useState(0);
    const [state, setState] = useState<'connecting' | 'live' | 'ended' | 'reconnecting' | 'replaying' | 'replayed'>('connecting');
    /** 0: the live stream; otherwise replaying the recording at this speed. */
    const [speed, setSpeed] = useState(0);
    const endedRef = useRef(props.ended);
    endedRef.current = props.ended;
    const box = useRef<HTMLDivElement>(null);
    const follow = useRef(true);

    useEffect(() => {
        if (speed) return undefined;
        const ctrl = new AbortController();
        let frame = 0;
        const schedule = () => {
            if (!frame) frame = requestAnimationFrame(() => { frame = 0; setVersion(screen.version); });
        };
        const run = async () => {
            let delay = 250;
            while (!ctrl.signal.aborted) {
                try {
                    const res = await fetch(api.ptyUrl(props.id), { headers: { Accept: 'text/event-stream', ...authHeaders() },
                                                                    signal: ctrl.signal, cache: 'no-store' });
                    noteStatus(res.status);
                    if (res.status === 401) return;
                    if (res.status === 204 || res.status === 404 || res.status === 410) {
                        setState('ended');
                        return;
                    }
                    if (!res.ok || !res.body) throw new Error(String(res.status));
                    screen.reset(); /* the stream starts with the whole backlog */
                    setState('live');
                    delay = 250;
                    const text = new TextDecoder();
                    const parser = new SseParser((data) => {
                        let f: PtyFrame;
                        try { f = JSON.parse(data) as PtyFrame; } catch { return; }
                        if (f.type === 'terminal_resize' && f.cols && f.rows) screen.resize(f.cols, f.rows);
                        else if (f.type === 'terminal' && f.data)
                            screen.write(f.encoding === 'base64' ? text.decode(decodeBase64(f.data), { stream: true }) : f.data);
                        schedule();
                    });
                    const reader = res.body.getReader();
                    const chunks = new TextDecoder();
                    for (;;) {
                        const { value, done } = await reader.read();
                        if (done) break;
                        parser.push(chunks.decode(value, { stream: true }));
                    }
                    if (endedRef.current) {
                        setState('ended');
                        return;
                    }
                } catch {
                    if (ctrl.signal.aborted) return;
                }
                setState('reconnecting');
                await new Promise((r) => setTimeout(r, delay));
                delay = Math.min(delay * 2, 5000);
            }
        };
        void run();
        return () => {
            ctrl.abort();
            if (frame) cancelAnimationFrame(frame);
        };
    }, [props.id, screen, speed]);

    // Replay: the recording's output again, with its timing scaled by the speed.
    useEffect(() => {
        if (!speed) return undefined;
        const ctrl = new AbortController();
        let timer = 0;
        setState('replaying');
        api.recording(props.id, ctrl.signal).then((text) => {
            const lines = text.split('\n').filter((l) => l.trim());
            let header: { width?: number; height?: number } = {};
            const frames: [number, string][] = [];
            lines.forEach((l, i) => {
                try {
                    const v = JSON.parse(l) as unknown;
                    if (i === 0 && v && typeof v === 'object' && !Array.isArray(v)) header = v as typeof header;
                    else if (Array.isArray(v) && v[1] === 'o' && typeof v[0] === 'number' && typeof v[2] === 'string')
                        frames.push([v[0], v[2]]);
                } catch { /* a damaged line is skipped */ }
            });
            screen.reset();
            if (header.width && header.height) screen.resize(header.width, header.height);
            setVersion(screen.version);
            const start = performance.now();
            let next = 0;
            const tick = () => {
                const now = (performance.now() - start) / 1000 * speed;
                while (next < frames.length && frames[next]![0] <= now) screen.write(frames[next++]![1]);
                setVersion(screen.version);
                if (next >= frames.length) { setState('replayed'); return; }
                timer = window.setTimeout(tick, Math.min(250, Math.max(10, (frames[next]![0] - now) * 1000 / speed)));
            };
            tick();
        }, (e) => {
            if (!ctrl.signal.aborted) { toastError(e, 'Loading the recording'); setSpeed(0); }
        });
        return () => { ctrl.abort(); clearTimeout(timer); };
    }, [props.id, screen, speed]);

    useLayoutEffect(() => {
        const el = box.current;
        if (el && follow.current) el.scrollTop = el.scrollHeight;
    });

    return (
        <div class="terminal-wrap">
            <div class="terminal" ref={box} role="log" aria-label="Terminal output" tabIndex={0}
                 onScroll={() => {
                     const el = box.current;
                     if (el) follow.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 20;
                 }}>
                {shown(screen.lines).map((l, i) => (
                    <div key={i} class="t-line">{l.length ? runs(l).map((r, j) =>
                        <span key={j} class={r.cls || undefined}>{r.text}</span>) : '\u00a0'}</div>
                ))}
            </div>
            <div class="terminal-bar">
                <p class="terminal-state" aria-live="polite">{label(state, props.ended)} · {screen.cols}×{screen.rows}</p>
                {props.ended && (
                    <div class="replay" role="group" aria-label="Replay the recording">
                        {[1, 4, 16].map((x) => (
                            <button key={x} type="button" class={speed === x ? 'primary' : ''}
                                    aria-label={`Replay at ${x}× speed`} onClick={() => setSpeed(x)}>
                                {x === 1 ? 'Replay' : `${x}×`}</button>
                        ))}
                        {speed > 0 && <button type="button" onClick={() => setSpeed(0)}>Show all</button>}
                    </div>
                )}
            </div>
        </div>
    );
}
