// ui.tsx — what every view shares: the client-side router, toasts, relative times, status
// badges and the small hooks around them.
import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, type SessionStatus } from './api';

// ---- a tiny store: a value and the components that want to hear about it ------------------------

export class Store<T> {
    private readonly listeners = new Set<() => void>();
    constructor(private value: T) {}
    get(): T {
        return this.value;
    }
    set(v: T): void {
        this.value = v;
        for (const l of [...this.listeners]) l();
    }
    subscribe(l: () => void): () => void {
        this.listeners.add(l);
        return () => { this.listeners.delete(l); };
    }
}

export function useStore<T>(s: Store<T>): T {
    const [, force] = useState(0);
    useEffect(() => s.subscribe(() => force((n) => n + 1)), [s]);
    return s.get();
}

// ---- routing: history API, three routes ---------------------------------------------------------

export const location = new Store<string>(window.location.pathname + window.location.search);
window.addEventListener('popstate', () => location.set(window.location.pathname + window.location.search));

export function navigate(to: string, replace = false): void {
    if (to === location.get()) return;
    if (replace) history.replaceState(null, '', to);
    else history.pushState(null, '', to);
    location.set(to);
    window.scrollTo(0, 0);
}

export function Link(props: { href: string; class?: string; children: ComponentChildren;
                              'aria-label'?: string; tabIndex?: number }): JSX.Element {
    const click = (e: MouseEvent) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(props.href);
    };
    return <a href={props.href} class={props.class} onClick={click} aria-label={props['aria-label']}
              tabIndex={props.tabIndex}>{props.children}</a>;
}

// ---- toasts -------------------------------------------------------------------------------------

export interface Toast {
    id: number;
    kind: 'error' | 'info';
    text: string;
}
export const toasts = new Store<Toast[]>([]);
let toastId = 0;

export function toast(text: string, kind: Toast['kind'] = 'info'): void {
    const id = ++toastId;
    toasts.set([...toasts.get().slice(-3), { id, kind, text }]);
    setTimeout(() => dismiss(id), kind === 'error' ? 8000 : 4000);
}

/** The error toasts are about something the user just fixed (a refused form that now went). */
export function dismissErrors(): void {
    toasts.set(toasts.get().filter((t) => t.kind !== 'error'));
}

export function dismiss(id: number): void {
    toasts.set(toasts.get().filter((t) => t.id !== id));
}

/** A failed call as a toast: the Problem's `detail` when the server sent one. */
export function toastError(e: unknown, what?: string): void {
    if (e instanceof DOMException && e.name === 'AbortError') return;
    const text = e instanceof ApiError ? e.message : String(e);
    toast(what ? `${what}: ${text}` : text, 'error');
}

export function Toasts(): JSX.Element {
    const list = useStore(toasts);
    return (
        <div class="toasts" role="status" aria-live="polite">
            {list.map((t) => (
                <div key={t.id} class={`toast toast-${t.kind}`} role={t.kind === 'error' ? 'alert' : undefined}>
                    <span>{t.text}</span>
                    <button type="button" class="icon" aria-label="Dismiss" onClick={() => dismiss(t.id)}>×</button>
                </div>
            ))}
        </div>
    );
}

// ---- time ---------------------------------------------------------------------------------------

/** Re-renders the caller every `ms` so relative times stay true. */
export function useTick(ms = 15000): number {
    const [n, setN] = useState(0);
    useEffect(() => {
        const t = setInterval(() => setN((x) => x + 1), ms);
        return () => clearInterval(t);
    }, [ms]);
    return n;
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto', style: 'short' });

export function relativeTime(iso: string | null | undefined, now = Date.now()): string {
    if (!iso) return '';
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return '';
    const s = Math.round((t - now) / 1000);
    const a = Math.abs(s);
    if (a < 10) return 'just now';
    if (a < 60) return rtf.format(s, 'second');
    if (a < 3600) return rtf.format(Math.round(s / 60), 'minute');
    if (a < 86400) return rtf.format(Math.round(s / 3600), 'hour');
    return rtf.format(Math.round(s / 86400), 'day');
}

export function Time(props: { iso: string | null | undefined; prefix?: string }): JSX.Element | null {
    useTick();
    if (!props.iso) return null;
    return <time dateTime={props.iso} title={new Date(props.iso).toLocaleString()}>
        {props.prefix}{relativeTime(props.iso)}</time>;
}

// ---- status -------------------------------------------------------------------------------------

export function StatusBadge(props: { status: SessionStatus }): JSX.Element {
    return <span class={`badge status-${props.status}`} data-status={props.status}>{props.status}</span>;
}

/** Is the focus in a field where letters are text, not shortcuts? */
export function typing(e: KeyboardEvent): boolean {
    const t = e.target as HTMLElement | null;
    if (!t) return false;
    return t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName);
}

export function useKeys(handler: (e: KeyboardEvent) => void, deps: unknown[]): void {
    useEffect(() => {
        window.addEventListener('keydown', handler);
        return () => window.removeEventListener('keydown', handler);
        // eslint-disable-next-line react-hooks/exhaustive-deps
    }, deps);
}
