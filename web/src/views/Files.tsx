// Files.tsx — the session's changed files and their diffs, and a browser of its workspace. Every
// line comes from the files-and-diffs endpoints: the changed files (GET …/files: status and line
// counts since the session's base snapshot), one file's diff (GET …/diff/{path}?format=split,
// which carries both the git text and the side-by-side rows), the workspace tree one directory
// at a time (GET …/workspace/files?path=) and a file's text (GET …/files/content?path=).
// Live: the session page hands in the seq of the newest file_edit/diff event; each new one
// reloads the list, the open diff and the open directories.
import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, api, type FileChange, type FileChangeList, type FileContent, type FileDiff,
         type SplitFile, type SplitRow, type WorkspaceNode } from '../api';
import { Time, typing, useKeys } from '../ui';

/** A failed call as one line: the Problem's title and detail when the server sent one. */
export function problemText(e: unknown): string {
    if (e instanceof ApiError) {
        const p = e.problem;
        if (p?.title && p.detail) return `${p.title}: ${p.detail}`;
        return p?.detail || p?.title || e.message;
    }
    return String(e);
}

function aborted(e: unknown): boolean {
    return e instanceof DOMException && e.name === 'AbortError';
}

export type Loaded<T> = { data: T; error: null } | { data: null; error: string } | null;

/** Loads with `load` whenever one of `deps` changes; keeps the last answer while reloading (the
 *  panes are keyed by their file, so what is kept is always the same file's older answer). */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> {
    const [state, setState] = useState<Loaded<T>>(null);
    useEffect(() => {
        const ctrl = new AbortController();
        load(ctrl.signal).then((data) => { if (!ctrl.signal.aborted) setState({ data, error: null }); },
                               (e) => { if (!aborted(e) && !ctrl.signal.aborted) setState({ data: null, error: problemText(e) }); });
        return () => ctrl.abort();
        // eslint-disable-next-line react-hooks/exhaustive-deps
    }, deps);
    return state;
}

const STATUS_MARK: Record<string, string> = { added: 'A', modified: 'M', deleted: 'D', renamed: 'R' };

/** `at`: a snapshot id to show the workspace as it was there (the timeline's seek); unset: now. */
export function FilesView(props: { id: string; changeSeq: number; at?: string | undefined }): JSX.Element {
    const [mode, setMode] = useState<'changes' | 'tree'>('changes');
    const [layout, setLayout] = useState<'unified' | 'split'>('split');
    /** The file shown on the right: its diff (changed) or its text (from the tree). */
    const [open, setOpen] = useState<{ path: string; as: 'diff' | 'content' } | null>(null);
    const at = props.at;
    const list = useLoad<FileChangeList>((s) => api.files(props.id, at, s), [props.id, props.changeSeq, at]);
    const items = list?.data?.items ?? [];

    // The first changed file opens by itself, so the tab shows a diff at once.
    useEffect(() => {
        if (!open && items[0]) setOpen({ path: items[0].path, as: 'diff' });
    }, [open, items]);

    useKeys((e) => {
        if (typing(e) || e.ctrlKey || e.metaKey || e.altKey || mode !== 'changes') return;
        if (e.key !== 'j' && e.key !== 'k') return;
        e.preventDefault();
        const i = items.findIndex((f) => f.path === open?.path);
        const next = items[e.key === 'j' ? Math.min(i + 1, items.length - 1) : Math.max(i - 1, 0)];
        if (next) setOpen({ path: next.path, as: 'diff' });
    }, [items, open, mode]);

    const added = items.reduce((n, f) => n + f.lines_added, 0);
    const removed = items.reduce((n, f) => n + f.lines_removed, 0);
    const changed = new Map(items.map((f) => [f.path, f]));
    return (
        <div class="files-view">
            <div class="files-side">
                <div class="seg" role="group" aria-label="Which files">
                    <button type="button" aria-pressed={mode === 'changes'} onClick={() => setMode('changes')}>Changes</button>
                    <button type="button" aria-pressed={mode === 'tree'} onClick={() => setMode('tree')}>All files</button>
                </div>
                {mode === 'changes' ? (
                    <>
                        {list?.error && <p class="notice error" role="alert">{list.error}</p>}
                        {list === null && <p class="muted">Loading…</p>}
                        {list?.data && (
                            <p class="files-summary" aria-live="polite">
                                {list.data.total === 0 ? 'No file changed yet.'
                                    : <>{list.data.total} {list.data.total === 1 ? 'file' : 'files'} changed{' '}
                                        <span class="plus">+{added}</span> <span class="minus">−{removed}</span></>}
                            </p>
                        )}
                        <ul class="file-list" aria-label="Changed files (j/k to move)">
                            {items.map((f) => (
                                <li key={f.path}>
                                    <FileRow f={f} current={open?.path === f.path}
                                             onOpen={() => setOpen({ path: f.path, as: 'diff' })} />
                                </li>
                            ))}
                        </ul>
                        {list?.data && list.data.total > items.length && (
                            <p class="muted">The first {items.length} of {list.data.total} files.</p>
                        )}
                    </>
                ) : (
                    <ul class="tree" role="tree" aria-label="Workspace files">
                        <Dir id={props.id} path="" at={at} changeSeq={props.changeSeq} depth={0} open={open?.path}
                             onOpen={(p) => setOpen({ path: p, as: changed.has(p) ? 'diff' : 'content' })} />
                    </ul>
                )}
            </div>
            <div class="files-main">
                {open === null ? <p class="empty">{items.length ? '' : 'Nothing to show yet.'}</p>
                    : open.as === 'diff'
                        ? <DiffPane key={open.path} id={props.id} at={at} path={open.path} changeSeq={props.changeSeq} layout={layout}
                                    setLayout={setLayout} onContent={() => setOpen({ path: open.path, as: 'content' })} />
                        : <ContentPane key={open.path} id={props.id} at={at} path={open.path} changeSeq={props.changeSeq}
                                       change={changed.get(open.path)}
                                       onDiff={() => setOpen({ path: open.path, as: 'diff' })} />}
            </div>
        </div>
    );
}

function FileRow(props: { f: FileChange; current: boolean; onOpen: () => void }): JSX.Element {
    const { f } = props;
    const slash = f.path.lastIndexOf('/');
    return (
        <button type="button" class={`file-row${props.current ? ' current' : ''}`} data-path={f.path}
                data-status={f.status} aria-current={props.current ? 'true' : undefined} onClick={props.onOpen}
                title={f.old_path ? `${f.old_path} → ${f.path}` : f.path}>
            <span class={`fstat fstat-${f.status}`} aria-label={f.status}>{STATUS_MARK[f.status] ?? '?'}</span>
            <span class="fname"><span class="fdir">{f.path.slice(0, slash + 1)}</span>{f.path.slice(slash + 1)}</span>
            {f.binary ? <span class="muted">binary</span>
                : <span class="counts"><span class="plus">+{f.lines_added}</span> <span class="minus">−{f.lines_removed}</span></span>}
        </button>
    );
}

/** One directory of the tree, loaded when it is first opened (the root at once). */
function Dir(props: { id: string; path: string; at: string | undefined; changeSeq: number; depth: number;
                      open: string | undefined; onOpen: (path: string) => void }): JSX.Element {
    const node = useLoad<WorkspaceNode>((s) => api.tree(props.id, props.path, props.at, s),
                                        [props.id, props.path, props.changeSeq, props.at]);
    const [expanded, setExpanded] = useState<ReadonlySet<string>>(new Set());
    if (node?.error) return <li role="none" class="error">{node.error}</li>;
    if (!node?.data) return <li role="none" class="muted">Loading…</li>;
    const children = 'children' in node.data ? node.data.children ?? [] : [];
    if (!children.length && props.depth === 0) return <li role="none" class="muted">The workspace is empty.</li>;
    const sorted = [...children].sort((a, b) =>
        (a.type === 'directory' ? 0 : 1) - (b.type === 'directory' ? 0 : 1) || a.path.localeCompare(b.path));
    return (
        <>
            {sorted.map((c) => {
                const name = c.path.slice(c.path.lastIndexOf('/') + 1);
                const indent = `depth-${Math.min(props.depth, 12)}`;
                if (c.type === 'directory') {
                    const isOpen = expanded.has(c.path);
                    const toggle = () => {
                        const next = new Set(expanded);
                        if (isOpen) next.delete(c.path); else next.add(c.path);
                        setExpanded(next);
                    };
                    return (
                        <li key={c.path} role="treeitem" aria-expanded={isOpen}>
                            <button type="button" class={`tree-row dir ${indent}`} data-path={c.path} onClick={toggle}>
                                <span class="twisty" aria-hidden="true">{isOpen ? '▾' : '▸'}</span>{name}/
                            </button>
                            {isOpen && (
                                <ul role="group">
                                    <Dir id={props.id} path={c.path} at={props.at} changeSeq={props.changeSeq} depth={props.depth + 1}
                                         open={props.open} onOpen={props.onOpen} />
                                </ul>
                            )}
                        </li>
                    );
                }
                return (
                    <li key={c.path} role="treeitem" aria-selected={props.open === c.path}>
                        <button type="button" class={`tree-row file ${indent}${props.open === c.path ? ' current' : ''}`}
                                data-path={c.path} data-modified={c.is_modified ? 'true' : 'false'}
                                onClick={() => props.onOpen(c.path)}>
                            <span class="twisty" aria-hidden="true" />{name}{c.type === 'symlink' ? ' →' : ''}
                            {c.is_modified && <span class="mod-dot" aria-label="modified" title="modified in this session">●</span>}
                        </button>
                    </li>
                );
            })}
        </>
    );
}

interface Line { kind: 'add' | 'del' | 'context' | 'hunk' | 'meta'; old?: number; new?: number; text: string }

/** The unified view from the git text: line numbers follow each hunk's header. */
function unifiedLines(diff: string): Line[] {
    const out: Line[] = [];
    let o = 0, n = 0, inHunk = false;
    const lines = diff.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    for (const l of lines) {
        const h = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(l);
        if (h) {
            o = Number(h[1]); n = Number(h[2]); inHunk = true;
            out.push({ kind: 'hunk', text: l });
        } else if (!inHunk || l.startsWith('diff --git ')) {
            inHunk = false;
            /* the git header: only what a reader needs (modes, renames, binary) */
            if (/^(new file|deleted file|old mode|new mode|rename |similarity|Binary files)/.test(l))
                out.push({ kind: 'meta', text: l });
        } else if (l.startsWith('+')) out.push({ kind: 'add', new: n++, text: l.slice(1) });
        else if (l.startsWith('-')) out.push({ kind: 'del', old: o++, text: l.slice(1) });
        else if (l.startsWith('\\')) out.push({ kind: 'meta', text: l });
        else out.push({ kind: 'context', old: o++, new: n++, text: l.slice(1) });
    }
    return out;
}

function DiffPane(props: { id: string; path: string; at: string | undefined; changeSeq: number;
                           layout: 'unified' | 'split'; setLayout: (l: 'unified' | 'split') => void;
                           onContent: () => void }): JSX.Element {
    const diff = useLoad<FileDiff>((s) => api.fileDiff(props.id, props.path, props.at, s),
                                   [props.id, props.path, props.changeSeq, props.at]);
    const d = diff?.data;
    const split = (d?.split as { files?: SplitFile[] } | undefined)?.files?.[0];
    return (
        <section class="diff-pane" aria-label={`Diff of ${props.path}`}>
            <div class="diff-head">
                <h2 class="diff-title">
                    {d?.old_path && <span class="fdir">{d.old_path} → </span>}{props.path}
                </h2>
                {d && <span class={`fstat-word fstat-${d.status}`}>{d.status}</span>}
                {d && !d.binary && <span class="counts"><span class="plus">+{d.lines_added}</span> <span class="minus">−{d.lines_removed}</span></span>}
                <span class="spacer-flex" />
                <div class="seg" role="group" aria-label="Diff layout">
                    <button type="button" aria-pressed={props.layout === 'unified'} onClick={() => props.setLayout('unified')}>Unified</button>
                    <button type="button" aria-pressed={props.layout === 'split'} onClick={() => props.setLayout('split')}>Split</button>
                </div>
                {d && d.status !== 'deleted' && !d.binary && <button type="button" onClick={props.onContent}>View file</button>}
            </div>
            {diff === null && <p class="muted">Loading…</p>}
            {diff?.error && <p class="notice error" role="alert">{diff.error}</p>}
            {d && d.binary && <p class="notice">A binary file: there is no text to compare.</p>}
            {d && !d.binary && d.hunks.length === 0 && <p class="notice">No change in the text{d.status === 'renamed' ? ' (renamed only)' : ''}.</p>}
            {d && !d.binary && d.hunks.length > 0 && (props.layout === 'split' && split
                ? <SplitTable file={split} />
                : <UnifiedTable lines={unifiedLines(d.diff)} />)}
        </section>
    );
}

function UnifiedTable(props: { lines: Line[] }): JSX.Element {
    return (
        <div class="diff-scroll">
            <table class="diff unified" aria-label="Unified diff">
                <tbody>
                    {props.lines.map((l, i) => (
                        <tr key={i} class={`d-${l.kind}`}>
                            {l.kind === 'hunk' || l.kind === 'meta'
                                ? <td colSpan={3} class="d-text">{l.text}</td>
                                : <>
                                    <td class="ln">{l.old ?? ''}</td>
                                    <td class="ln">{l.new ?? ''}</td>
                                    <td class="d-text"><span class="sign" aria-hidden="true">{l.kind === 'add' ? '+' : l.kind === 'del' ? '−' : ' '}</span>{l.text}</td>
                                </>}
                        </tr>
                    ))}
                </tbody>
            </table>
        </div>
    );
}

function sideClass(row: SplitRow, side: 'left' | 'right'): string {
    if (row.kind === 'context') return 'd-context';
    if (row.kind === 'change') return side === 'left' ? 'd-del' : 'd-add';
    if (row.kind === 'add') return side === 'right' ? 'd-add' : 'd-none';
    return side === 'left' ? 'd-del' : 'd-none';
}

function SplitTable(props: { file: SplitFile }): JSX.Element {
    return (
        <div class="diff-scroll">
            <table class="diff split" aria-label="Side-by-side diff">
                <colgroup><col class="c-ln" /><col /><col class="c-ln" /><col /></colgroup>
                {props.file.hunks.map((h, hi) => (
                    <tbody key={hi}>
                        <tr class="d-hunk"><td colSpan={4} class="d-text">{h.header}</td></tr>
                        {h.rows.map((r, i) => (
                            <tr key={i} data-kind={r.kind}>
                                <td class={`ln ${sideClass(r, 'left')}`}>{r.left?.line ?? ''}</td>
                                <td class={`d-text ${sideClass(r, 'left')}`}>{r.left?.text ?? ''}</td>
                                <td class={`ln ${sideClass(r, 'right')}`}>{r.right?.line ?? ''}</td>
                                <td class={`d-text ${sideClass(r, 'right')}`}>{r.right?.text ?? ''}</td>
                            </tr>
                        ))}
                    </tbody>
                ))}
            </table>
        </div>
    );
}

function ContentPane(props: { id: string; path: string; at: string | undefined; changeSeq: number;
                              change: FileChange | undefined; onDiff: () => void }): JSX.Element {
    const file = useLoad<FileContent>((s) => api.fileContent(props.id, props.path, props.at, s),
                                      [props.id, props.path, props.changeSeq, props.at]);
    const f = file?.data;
    return (
        <section class="diff-pane" aria-label={`Contents of ${props.path}`}>
            <div class="diff-head">
                <h2 class="diff-title">{props.path}</h2>
                {f && <span class="muted">{f.size_bytes} bytes · <Time iso={f.last_modified} /></span>}
                <span class="spacer-flex" />
                {props.change && <button type="button" onClick={props.onDiff}>Show the diff</button>}
            </div>
            {file === null && <p class="muted">Loading…</p>}
            {file?.error && <p class="notice error" role="alert">{file.error}</p>}
            {f && f.encoding === 'base64' && <p class="notice">A binary file ({f.size_bytes} bytes): not shown as text.</p>}
            {f && f.encoding !== 'base64' && (
                <div class="diff-scroll">
                    <table class="diff content" aria-label="File contents">
                        <tbody>
                            {(f.content.endsWith('\n') ? f.content.slice(0, -1) : f.content).split('\n').map((l, i) => (
                                <tr key={i}><td class="ln">{i + 1}</td><td class="d-text">{l}</td></tr>
                            ))}
                        </tbody>
                    </table>
                </div>
            )}
        </section>
    );
}
