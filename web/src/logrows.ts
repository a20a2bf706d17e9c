// logrows.ts — the rows of the session page's virtualised event log, kept by hand rather than
// by Preact: scrolling is the one hot path of the UI (a 20,000-event log dragged end to end
// shows new rows in every frame), and a frame there must cost a small part of 16.7 ms.
//
// A fixed pool of row elements, each placed by its own transform. Scrolling by d rows gives the
// d rows that left the view to the d events entering it and writes only what differs (text
// nodes, a transform, attributes): no element is created, moved or removed while scrolling,
// rows still in view are not touched, and style is recomputed only where a class changes. The
// elements go back into display order (for screen readers) once the scrolling stops: settle().
// Every row has the same height, so an offset maps to an index without measuring anything;
// nothing here reads layout.
import type { AgentEvent } from './api';
import { describe } from './events';

export const ROW = 28; /* px: every row has this height (styles.css .log-row) */

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

interface Line { kind: string; text: string; ts: string }

/* An event's line is computed once: scrolling back over it costs nothing. */
const lines = new WeakMap<AgentEvent, Line>();

function lineOf(ev: AgentEvent): Line {
    let l = lines.get(ev);
    if (!l) {
        const d = describe(ev);
        const ts = 'ts' in ev && typeof ev.ts === 'string' ? timeFormat.format(new Date(ev.ts)) : '';
        l = { kind: d.kind, text: d.text, ts };
        lines.set(ev, l);
    }
    return l;
}

interface Row {
    el: HTMLDivElement;
    seq: Text;
    kind: Text;
    text: Text;
    ts: Text;
    ev: AgentEvent | null; /* what it shows (null: a spare row, hidden) */
    index: number;
    cls: string;
}

function cell(row: HTMLElement, cls: string): Text {
    const span = document.createElement('span');
    span.className = cls;
    span.setAttribute('role', 'cell');
    const t = document.createTextNode('');
    span.appendChild(t);
    row.appendChild(span);
    return t;
}

export class LogRows {
    private readonly rows: Row[] = [];
    private first = -1;
    private rotated = false;

    /** block: the element the rows live in (empty; positioned at the top of the scrolled area). */
    constructor(private readonly block: HTMLElement) {}

    /** Shows events[first ..] in `count` rows; `selected` is the selected index (-1: none). */
    render(events: readonly AgentEvent[], first: number, count: number, selected: number): void {
        const rows = this.rows;
        if (rows.length !== count) {
            while (rows.length < count) rows.push(this.make());
            while (rows.length > count) rows.pop()!.el.remove();
            for (const r of rows) r.ev = null; /* all shown anew */
        } else if (first !== this.first && Math.abs(first - this.first) < count) {
            // Scrolled by d rows: the d rows that left the view at one end go to the other end,
            // where the d rows entering it are shown; the others keep what they show.
            // Their elements stay where they are in the DOM until settle().
            const d = first - this.first;
            const moved = d > 0 ? rows.splice(0, d) : rows.splice(count + d, -d);
            if (d > 0) rows.push(...moved); else rows.unshift(...moved);
            this.rotated = true;
        }
        this.first = first;
        for (let k = 0; k < count; k++) {
            const r = rows[k]!;
            const i = first + k;
            const ev = i < events.length ? events[i]! : null;
            if (ev !== r.ev || i !== r.index) this.fill(r, ev, i);
            const cls = ev ? `log-row kind-${lineOf(ev).kind}${i === selected ? ' selected' : ''}` : 'log-spare';
            if (cls !== r.cls) {
                r.cls = cls;
                r.el.className = cls;
                r.el.setAttribute('aria-selected', String(i === selected));
            }
        }
    }

    /**
     * Puts the row elements in the DOM in the order they are shown, for assistive technologies
     * (which read a grid in DOM order; aria-rowindex gives each row's place meanwhile). Moving
     * elements costs style and layout, so this runs once the scrolling stopped, not in each frame.
     */
    settle(): void {
        if (!this.rotated) return;
        this.rotated = false;
        const els = this.rows.map((r) => r.el);
        let j = 0; /* the rows already in place at the start stay */
        while (j < els.length && this.block.children[j] === els[j]) j++;
        if (j < els.length) this.block.append(...els.slice(j));
    }

    private make(): Row {
        const el = document.createElement('div');
        el.setAttribute('role', 'row');
        const r: Row = { el, seq: cell(el, 'seq'), kind: cell(el, 'kind'), text: cell(el, 'text'),
                         ts: cell(el, 'ts'), ev: null, index: -1, cls: '' };
        this.block.appendChild(el);
        return r;
    }

    private fill(r: Row, ev: AgentEvent | null, i: number): void {
        r.ev = ev;
        r.index = i;
        if (!ev) return; /* a spare row (past the last event): its class hides it */
        r.el.style.transform = `translateY(${i * ROW}px)`;
        const l = lineOf(ev);
        const seq = String(ev.seq);
        r.el.setAttribute('aria-rowindex', String(i + 1));
        r.el.setAttribute('data-seq', seq);
        if (r.seq.data !== seq) r.seq.data = seq;
        if (r.kind.data !== l.kind) r.kind.data = l.kind;
        if (r.text.data !== l.text) r.text.data = l.text;
        if (r.ts.data !== l.ts) r.ts.data = l.ts;
    }
}
