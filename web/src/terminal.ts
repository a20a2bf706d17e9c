// terminal.ts — a small terminal screen for the session's PTY stream: enough of VT100/xterm to
// show what agent CLIs print (text, colours, bold, carriage returns, cursor movement, erasing),
// kept as a grid of cells plus a bounded scrollback. Written here because the terminal widgets
// on npm (xterm.js, asciinema-player) inject <style> elements or style attributes, which the web
// UI's Content-Security-Policy refuses; colours here are classes (t-fg1 …), so no inline style.
// Unknown sequences are consumed and ignored, never shown as garbage.

export interface Cell {
    ch: string;
    /** Style: fg (0-15, 16 = default) | bg << 5 (0-15, 16 = default) | bold << 10 | inverse << 11 */
    st: number;
}

const DEFAULT_STYLE = 16 | (16 << 5);
const MAX_SCROLLBACK = 5000;
const MAX_PARAMS = 16;

export function styleClass(st: number): string {
    const fg = st & 31, bg = (st >> 5) & 31, bold = (st >> 10) & 1, inv = (st >> 11) & 1;
    const c: string[] = [];
    const f = inv ? (bg === 16 ? 'bgc' : bg) : fg, b = inv ? (fg === 16 ? 'fgc' : fg) : bg;
    if (f !== 16) c.push(`t-fg${f}`);
    if (b !== 16) c.push(`t-bg${b}`);
    if (bold) c.push('t-b');
    return c.join(' ');
}

export class Screen {
    cols: number;
    rows: number;
    /** Scrollback followed by the screen's rows; the screen is the last `rows` lines. */
    lines: Cell[][] = [];
    private cx = 0;
    private cy = 0; /* row within the screen */
    private st = DEFAULT_STYLE;
    private state: 'text' | 'esc' | 'csi' | 'osc' | 'osc-esc' | 'charset' = 'text';
    private params = '';
    /** Bumped on every change, for renderers. */
    version = 0;

    constructor(cols = 120, rows = 40) {
        this.cols = cols;
        this.rows = rows;
        this.reset();
    }

    reset(): void {
        this.lines = [];
        for (let i = 0; i < this.rows; i++) this.lines.push([]);
        this.cx = this.cy = 0;
        this.st = DEFAULT_STYLE;
        this.state = 'text';
        this.version++;
    }

    resize(cols: number, rows: number): void {
        cols = Math.max(1, Math.min(cols, 1000));
        rows = Math.max(1, Math.min(rows, 500));
        while (this.rows < rows) { this.lines.push([]); this.rows++; }
        if (rows < this.rows) {
            this.cy = Math.max(0, this.cy - (this.rows - rows));
            this.rows = rows;
        }
        this.cols = cols;
        this.cx = Math.min(this.cx, cols - 1);
        this.version++;
    }

    private line(y = this.cy): Cell[] {
        return this.lines[this.lines.length - this.rows + y]!;
    }

    private lineFeed(): void {
        if (this.cy < this.rows - 1) {
            this.cy++;
            return;
        }
        this.lines.push([]);
        if (this.lines.length > MAX_SCROLLBACK + this.rows)
            this.lines.splice(0, this.lines.length - MAX_SCROLLBACK - this.rows);
    }

    private put(ch: string): void {
        if (this.cx >= this.cols) { /* auto-wrap */
            this.cx = 0;
            this.lineFeed();
        }
        const l = this.line();
        while (l.length < this.cx) l.push({ ch: ' ', st: DEFAULT_STYLE });
        l[this.cx] = { ch, st: this.st };
        this.cx++;
    }

    write(text: string): void {
        for (const ch of text) this.char(ch);
        this.version++;
    }

    private char(ch: string): void {
        switch (this.state) {
        case 'esc':
            if (ch === '[') { this.state = 'csi'; this.params = ''; }
            else if (ch === ']') this.state = 'osc';
            else if (ch === '(' || ch === ')') this.state = 'charset';
            else if (ch === 'c') this.reset();
            else this.state = 'text';
            if (ch === 'M' && this.cy > 0) this.cy--; /* reverse index */
            return;
        case 'charset':
            this.state = 'text';
            return;
        case 'osc': /* window titles and the like: skipped up to BEL or ST */
            if (ch === '\x07') this.state = 'text';
            else if (ch === '\x1b') this.state = 'osc-esc';
            return;
        case 'osc-esc':
            this.state = ch === '\\' ? 'text' : 'osc';
            return;
        case 'csi':
            if (/[0-9;?>!= ]/.test(ch)) {
                if (this.params.length < 64) this.params += ch;
                return;
            }
            this.state = 'text';
            this.csi(ch);
            return;
        default:
            break;
        }
        switch (ch) {
        case '\x1b': this.state = 'esc'; return;
        case '\r': this.cx = 0; return;
        case '\n': this.lineFeed(); return;
        case '\b': if (this.cx > 0) this.cx--; return;
        case '\t': this.cx = Math.min(this.cols - 1, (Math.floor(this.cx / 8) + 1) * 8); return;
        case '\x07': return;
        default:
            if (ch < ' ' || ch === '\x7f') return;
            this.put(ch);
        }
    }

    private csi(final: string): void {
        const priv = this.params.startsWith('?');
        const ps = this.params.replace(/^[?>!=]/, '').split(';').slice(0, MAX_PARAMS)
            .map((p) => (p === '' ? NaN : Number(p)));
        const n = (i: number, d = 1) => (Number.isFinite(ps[i]!) && ps[i]! > 0 ? ps[i]! : d);
        if (priv) return; /* modes (cursor visibility, alternate screen…): nothing to show */
        switch (final) {
        case 'm': this.sgr(ps); break;
        case 'A': this.cy = Math.max(0, this.cy - n(0)); break;
        case 'B': this.cy = Math.min(this.rows - 1, this.cy + n(0)); break;
        case 'C': this.cx = Math.min(this.cols - 1, this.cx + n(0)); break;
        case 'D': this.cx = Math.max(0, this.cx - n(0)); break;
        case 'G': this.cx = Math.min(this.cols - 1, n(0) - 1); break;
        case 'H': case 'f':
            this.cy = Math.min(this.rows - 1, n(0) - 1);
            this.cx = Math.min(this.cols - 1, n(1) - 1);
            break;
        case 'K': {
            const l = this.line();
            const mode = Number.isFinite(ps[0]!) ? ps[0]! : 0;
            if (mode === 0) l.length = Math.min(l.length, this.cx);
            else if (mode === 1) for (let i = 0; i <= this.cx && i < l.length; i++) l[i] = { ch: ' ', st: DEFAULT_STYLE };
            else l.length = 0;
            break;
        }
        case 'J': {
            const mode = Number.isFinite(ps[0]!) ? ps[0]! : 0;
            if (mode === 2 || mode === 3) {
                for (let y = 0; y < this.rows; y++) this.line(y).length = 0;
            } else if (mode === 0) {
                this.line().length = Math.min(this.line().length, this.cx);
                for (let y = this.cy + 1; y < this.rows; y++) this.line(y).length = 0;
            } else {
                for (let y = 0; y < this.cy; y++) this.line(y).length = 0;
            }
            break;
        }
        default: break; /* other sequences change nothing we show */
        }
    }

    private sgr(ps: number[]): void {
        if (!ps.length || (ps.length === 1 && Number.isNaN(ps[0]!))) ps = [0];
        for (let i = 0; i < ps.length; i++) {
            const p = Number.isNaN(ps[i]!) ? 0 : ps[i]!;
            const fg = this.st & 31, bg = (this.st >> 5) & 31, rest = this.st & ~1023;
            if (p === 0) this.st = DEFAULT_STYLE;
            else if (p === 1) this.st |= 1 << 10;
            else if (p === 22) this.st &= ~(1 << 10);
            else if (p === 7) this.st |= 1 << 11;
            else if (p === 27) this.st &= ~(1 << 11);
            else if (p >= 30 && p <= 37) this.st = rest | (bg << 5) | (p - 30);
            else if (p >= 90 && p <= 97) this.st = rest | (bg << 5) | (p - 90 + 8);
            else if (p === 39) this.st = rest | (bg << 5) | 16;
            else if (p >= 40 && p <= 47) this.st = rest | ((p - 40) << 5) | fg;
            else if (p >= 100 && p <= 107) this.st = rest | ((p - 100 + 8) << 5) | fg;
            else if (p === 49) this.st = rest | (16 << 5) | fg;
            else if (p === 38 || p === 48) { /* 256 colours and true colour: the nearest of 16 */
                let c = -1;
                if (ps[i + 1] === 5) {
                    const v = ps[i + 2] ?? 0;
                    c = v < 16 ? v : -1;
                    i += 2;
                } else if (ps[i + 1] === 2) {
                    i += 4;
                }
                if (c >= 0) this.st = p === 38 ? rest | (bg << 5) | c : rest | (c << 5) | fg;
            }
        }
    }
}

/** Runs of equal style in a line, for rendering one span per run. */
export function runs(line: readonly Cell[]): { text: string; cls: string }[] {
    const out: { text: string; cls: string }[] = [];
    let cur = -1, text = '';
    for (const c of line) {
        if (c.st !== cur) {
            if (text) out.push({ text, cls: styleClass(cur) });
            cur = c.st;
            text = '';
        }
        text += c.ch;
    }
    if (text) out.push({ text, cls: styleClass(cur) });
    return out;
}
