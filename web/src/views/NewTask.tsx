// NewTask.tsx — the task form: prompt, repository and branch, agent (and version), runtime,
// instance count and agent settings. The form is saved as a draft while typing (D38) and
// launched with Ctrl+Enter; the server's validation messages appear at their fields.
import type { JSX } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, api, type AgentCatalog, type Branch, type CreateTaskRequest, type Draft,
         type DraftBody, type Repository, type RuntimeCatalog, type Schemas } from '../api';
import { Time, dismissErrors, navigate, toast, toastError } from '../ui';

type RuntimeType = Schemas['RuntimeRequest']['type'];
const RUNTIMES: readonly RuntimeType[] = ['local', 'devcontainer', 'disabled'];
const AUTOSAVE_MS = 800;
const OTHER = '__other__', NONE = '__none__';

interface Form {
    prompt: string;
    repo: string;        /* a repository id, NONE, or OTHER (then repoUrl) */
    repoUrl: string;
    branch: string;
    agent: string;
    version: string;
    runtime: RuntimeType;
    count: number;
    settings: string;    /* JSON object text, or empty */
}

const EMPTY: Form = { prompt: '', repo: NONE, repoUrl: '', branch: '', agent: '', version: '',
                      runtime: 'local', count: 1, settings: '' };

/** The form as a task body; throws a message keyed by field when a field cannot be sent. */
function toBody(f: Form, repos: readonly Repository[], forDraft: boolean): DraftBody {
    const body: DraftBody = {};
    if (f.prompt.trim()) body.prompt = f.prompt;
    if (f.repo === NONE) body.repo = { mode: 'none' };
    else {
        const url = f.repo === OTHER ? f.repoUrl.trim() : repos.find((r) => r.id === f.repo)?.remoteUrl ?? '';
        if (url) body.repo = { mode: 'git', url, ...(f.branch ? { branch: f.branch } : {}) };
    }
    if (f.agent.trim()) {
        const a: Schemas['AgentRequest'] = { type: f.agent.trim(), version: f.version || 'latest',
                                             count: f.count };
        if (f.settings.trim()) {
            let settings: unknown;
            try {
                settings = JSON.parse(f.settings);
            } catch (e) {
                if (!forDraft) throw new FieldError('settings', 'is not valid JSON: ' + String(e));
            }
            if (settings !== undefined) {
                if (typeof settings !== 'object' || settings === null || Array.isArray(settings)) {
                    if (!forDraft) throw new FieldError('settings', 'must be a JSON object');
                } else {
                    a.settings = settings as Schemas['AgentSettings'];
                }
            }
        }
        body.agents = [a];
    }
    body.runtime = { type: f.runtime };
    return body;
}

/** An Idempotency-Key (a UUID v4, which the server accepts). crypto.randomUUID exists only in secure contexts (https, loopback); a
 *  server reached over plain http on another address still gets a random key. */
function newKey(): string {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6]! & 0x0f) | 0x40; /* version 4 */
    b[8] = (b[8]! & 0x3f) | 0x80; /* RFC 4122 variant */
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

class FieldError extends Error {
    constructor(readonly field: keyof Form | 'form', message: string) {
        super(message);
    }
}

function fromDraft(d: Draft, repos: readonly Repository[]): Form {
    const f: Form = { ...EMPTY };
    if (typeof d.prompt === 'string') f.prompt = d.prompt;
    else if (Array.isArray(d.prompt))
        f.prompt = d.prompt.map((b) => ('text' in b && typeof b.text === 'string' ? b.text : '')).join('\n');
    if (d.repo?.mode === 'git') {
        const r = repos.find((x) => x.remoteUrl === d.repo?.url);
        f.repo = r ? r.id : OTHER;
        f.repoUrl = r ? '' : d.repo.url ?? '';
        f.branch = d.repo.branch ?? '';
    }
    const a = d.agents?.[0];
    if (a) {
        f.agent = a.type;
        f.version = a.version && a.version !== 'latest' ? a.version : '';
        f.count = a.count ?? 1;
        f.settings = a.settings ? JSON.stringify(a.settings, null, 2) : '';
    }
    if (d.runtime?.type) f.runtime = d.runtime.type;
    return f;
}

/** The catalogue may say an agent's CLI is missing on this server (a member newer than the
 *  generated types: read it defensively). */
function notInstalled(a: AgentCatalog['items'][number]): boolean {
    return (a as Record<string, unknown>)['installed'] === false;
}

/** Which form field a Problem's dotted path belongs to. */
function fieldOf(path: string): keyof Form | 'form' {
    if (path.startsWith('prompt')) return 'prompt';
    if (path.startsWith('repo.branch')) return 'branch';
    if (path.startsWith('repo')) return 'repo';
    if (/^agents(\[\d+\])?\.count/.test(path)) return 'count';
    if (/^agents(\[\d+\])?\.settings/.test(path)) return 'settings';
    if (/^agents(\[\d+\])?\.version/.test(path)) return 'version';
    if (path.startsWith('agent')) return 'agent';
    if (path.startsWith('runtime')) return 'runtime';
    return 'form';
}

export function NewTask(props: { query: URLSearchParams }): JSX.Element {
    const [form, setForm] = useState<Form>(EMPTY);
    const [repos, setRepos] = useState<readonly Repository[]>([]);
    const [branches, setBranches] = useState<readonly Branch[]>([]);
    const [agents, setAgents] = useState<AgentCatalog | null>(null);
    const [runtimes, setRuntimes] = useState<RuntimeCatalog | null>(null);
    const [drafts, setDrafts] = useState<readonly Draft[]>([]);
    const [draftId, setDraftId] = useState<string | null>(props.query.get('draft'));
    const [saved, setSaved] = useState<string | null>(null);
    const [errors, setErrors] = useState<Partial<Record<keyof Form | 'form', string[]>>>({});
    const [sending, setSending] = useState(false);
    const dirty = useRef(false);
    const saving = useRef<Promise<unknown> | null>(null);
    const promptRef = useRef<HTMLTextAreaElement>(null);
    const idemKey = useRef(newKey());

    // What the pickers offer. /agents and /runtimes may not be served by this server yet (501):
    // then the agent is typed in and the runtime list is the contract's enum — never made up.
    useEffect(() => {
        api.repos().then((l) => setRepos(l.items), (e) => toastError(e, 'Repositories'));
        api.agents().then(setAgents, (e) => {
            if (!(e instanceof ApiError && (e.status === 501 || e.status === 404))) toastError(e, 'Agents');
        });
        api.runtimes().then(setRuntimes, (e) => {
            if (!(e instanceof ApiError && (e.status === 501 || e.status === 404))) toastError(e, 'Runtimes');
        });
        api.drafts().then((l) => setDrafts(l.items), (e) => toastError(e, 'Drafts'));
        promptRef.current?.focus();
    }, []);

    // Open the draft named in the URL once the repositories are known (to map its URL back).
    useEffect(() => {
        const id = props.query.get('draft');
        const d = id ? drafts.find((x) => x.id === id) : undefined;
        if (d && !dirty.current) {
            setForm(fromDraft(d, repos));
            setDraftId(d.id);
        }
        // eslint-disable-next-line react-hooks/exhaustive-deps
    }, [drafts, repos]);

    // The branches of the chosen repository, its default one preselected.
    useEffect(() => {
        setBranches([]);
        if (form.repo === NONE || form.repo === OTHER) return;
        let live = true;
        api.branches(form.repo).then((b) => {
            if (!live) return;
            setBranches(b.branches);
            const def = b.branches.find((x) => x.is_default);
            setForm((f) => (f.branch || !def ? f : { ...f, branch: def.name }));
        }, (e) => toastError(e, 'Branches'));
        return () => { live = false; };
    }, [form.repo]);

    // Autosave: a draft is created on the first change and updated after each pause in typing.
    useEffect(() => {
        if (!dirty.current) return undefined;
        const t = setTimeout(() => {
            const body = toBody(form, repos, true);
            const p = (draftId ? api.updateDraft(draftId, body) : api.createDraft(body)).then((d) => {
                if (!draftId) {
                    setDraftId(d.id);
                    const q = new URLSearchParams(props.query);
                    q.set('draft', d.id);
                    history.replaceState(null, '', `/new?${q.toString()}`);
                }
                setSaved(d.updatedAt);
            }, (e) => toastError(e, 'Saving the draft'));
            saving.current = p;
        }, AUTOSAVE_MS);
        return () => clearTimeout(t);
        // eslint-disable-next-line react-hooks/exhaustive-deps
    }, [form]);

    const set = <K extends keyof Form>(k: K, v: Form[K]) => {
        dirty.current = true;
        setForm((f) => ({ ...f, [k]: v, ...(k === 'repo' ? { branch: '' } : {}) }));
        setErrors((e) => ({ ...e, [k]: undefined }));
    };

    const launch = async () => {
        if (sending) return;
        setErrors({});
        let body: CreateTaskRequest;
        try {
            const b = toBody(form, repos, false);
            const missing: Partial<Record<keyof Form, string[]>> = {};
            if (!b.prompt) missing.prompt = ['Write what the agent should do.'];
            if (!b.agents) missing.agent = ['Name the agent type.'];
            if (!b.repo) missing.repo = ['Enter the repository URL.'];
            if (Object.keys(missing).length) {
                setErrors(missing);
                return;
            }
            body = b as CreateTaskRequest;
        } catch (e) {
            if (e instanceof FieldError) setErrors({ [e.field]: [e.message] });
            return;
        }
        setSending(true);
        try {
            const r = await api.createTask(body, idemKey.current);
            idemKey.current = newKey();
            await saving.current?.catch(() => undefined);
            if (draftId) await api.deleteDraft(draftId).catch(() => undefined);
            const ids = r.session_ids;
            dismissErrors();
            toast(`Launched ${ids.length} session${ids.length === 1 ? '' : 's'}`);
            navigate(ids.length === 1 ? `/sessions/${ids[0]}` : '/');
        } catch (e) {
            // The key makes a retry after a lost answer safe; any answer settles it, so an edited
            // form after a refusal is a new request (the server would replay the refusal).
            if (e instanceof ApiError && e.status !== 0) idemKey.current = newKey();
            if (e instanceof ApiError && Object.keys(e.fields).length) {
                const byField: Partial<Record<keyof Form | 'form', string[]>> = {};
                for (const [path, msgs] of Object.entries(e.fields)) {
                    const k = fieldOf(path);
                    byField[k] = [...(byField[k] ?? []), ...msgs.map((m) => (k === 'form' ? `${path}: ${m}` : m))];
                }
                setErrors(byField);
                toast(e.message, 'error');
            } else {
                toastError(e, 'Launch failed');
            }
        } finally {
            setSending(false);
        }
    };

    const onKey = (e: KeyboardEvent) => {
        if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            void launch();
        } else if (e.key === 'Escape') {
            // In a field, Esc only leaves the field (it may be closing a picker); a second Esc,
            // or one from elsewhere on the form, leaves the form (the draft is saved).
            const t = e.target as HTMLElement;
            if (['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName)) t.blur();
            else navigate('/');
        }
    };

    const agentTypes = agents?.items ?? null;
    // "latest" is the default already offered first; the catalogue may list it too.
    const versions = useMemo(() => (agentTypes?.find((a) => a.type === form.agent)?.versions ?? [])
        .filter((v) => v !== 'latest'), [agentTypes, form.agent]);
    const runtimeTypes = runtimes ? runtimes.items.map((r) => r.type) : RUNTIMES;
    const err = (k: keyof Form | 'form') => errors[k]?.length ? (
        <p class="field-error" id={`err-${k}`} role="alert">{errors[k]!.join(' ')}</p>) : null;
    const described = (k: keyof Form) => (errors[k]?.length ? `err-${k}` : undefined);

    return (
        <section class="new-task" aria-labelledby="new-title">
            <form class="task-form" onKeyDown={onKey} noValidate
                  onSubmit={(e) => { e.preventDefault(); void launch(); }}>
                <div class="toolbar">
                    <h1 id="new-title">New task</h1>
                    <span class="saved" aria-live="polite">{saved && <Time iso={saved} prefix="Draft saved " />}</span>
                </div>
                {err('form')}
                <label for="f-prompt">Prompt</label>
                <textarea id="f-prompt" ref={promptRef} rows={8} value={form.prompt} required
                          aria-invalid={!!errors.prompt} aria-describedby={described('prompt')}
                          placeholder="What should the agent do? (Ctrl+Enter launches)"
                          onInput={(e) => set('prompt', (e.target as HTMLTextAreaElement).value)} />
                {err('prompt')}

                <div class="grid">
                    <div>
                        <label for="f-repo">Repository</label>
                        <select id="f-repo" value={form.repo} aria-invalid={!!errors.repo}
                                aria-describedby={described('repo')}
                                onChange={(e) => set('repo', (e.target as HTMLSelectElement).value)}>
                            <option value={NONE}>No repository</option>
                            {repos.map((r) => <option key={r.id} value={r.id}>{r.displayName}</option>)}
                            <option value={OTHER}>Other git URL…</option>
                        </select>
                        {form.repo === OTHER && (
                            <input id="f-repo-url" type="text" aria-label="Git URL" placeholder="https://… or git@host:path"
                                   value={form.repoUrl}
                                   onInput={(e) => set('repoUrl', (e.target as HTMLInputElement).value)} />
                        )}
                        {err('repo')}
                    </div>
                    <div>
                        <label for="f-branch">Branch</label>
                        {branches.length ? (
                            <select id="f-branch" value={form.branch} aria-describedby={described('branch')}
                                    onChange={(e) => set('branch', (e.target as HTMLSelectElement).value)}>
                                {branches.map((b) => <option key={b.name} value={b.name}>{b.name}{b.is_default ? ' (default)' : ''}</option>)}
                            </select>
                        ) : (
                            <input id="f-branch" type="text" value={form.branch} disabled={form.repo === NONE}
                                   placeholder={form.repo === NONE ? '—' : 'default branch'}
                                   aria-describedby={described('branch')}
                                   onInput={(e) => set('branch', (e.target as HTMLInputElement).value)} />
                        )}
                        {err('branch')}
                    </div>
                    <div>
                        <label for="f-agent">Agent</label>
                        {agentTypes ? (
                            <select id="f-agent" value={form.agent} aria-invalid={!!errors.agent}
                                    aria-describedby={described('agent')}
                                    onChange={(e) => set('agent', (e.target as HTMLSelectElement).value)}>
                                <option value="">Choose an agent</option>
                                {agentTypes.map((a) => <option key={a.type} value={a.type}>
                                    {a.type}{notInstalled(a) ? ' (not installed)' : ''}</option>)}
                            </select>
                        ) : (
                            <input id="f-agent" type="text" value={form.agent} autoComplete="off"
                                   spellcheck={false} aria-invalid={!!errors.agent}
                                   aria-describedby={described('agent')}
                                   placeholder="agent type, e.g. claude-code"
                                   onInput={(e) => set('agent', (e.target as HTMLInputElement).value)} />
                        )}
                        {err('agent')}
                    </div>
                    <div>
                        <label for="f-version">Model / version</label>
                        {versions.length ? (
                            <select id="f-version" value={form.version}
                                    onChange={(e) => set('version', (e.target as HTMLSelectElement).value)}>
                                <option value="">latest</option>
                                {versions.map((v) => <option key={v} value={v}>{v}</option>)}
                            </select>
                        ) : (
                            <input id="f-version" type="text" value={form.version} placeholder="latest"
                                   aria-describedby={described('version')}
                                   onInput={(e) => set('version', (e.target as HTMLInputElement).value)} />
                        )}
                        {err('version')}
                    </div>
                    <div>
                        <label for="f-runtime">Runtime</label>
                        <select id="f-runtime" value={form.runtime} aria-describedby={described('runtime')}
                                onChange={(e) => set('runtime', (e.target as HTMLSelectElement).value as RuntimeType)}>
                            {runtimeTypes.map((r) => <option key={r} value={r}>{r}</option>)}
                        </select>
                        {err('runtime')}
                    </div>
                    <div>
                        <label for="f-count">Instances</label>
                        <input id="f-count" type="number" min={1} max={100} value={form.count}
                               aria-invalid={!!errors.count} aria-describedby={described('count')}
                               onInput={(e) => set('count', Math.max(1, Number((e.target as HTMLInputElement).value) || 1))} />
                        {err('count')}
                    </div>
                </div>
                <details open={!!form.settings || !!errors.settings}>
                    <summary>Agent settings (JSON)</summary>
                    <textarea id="f-settings" rows={5} value={form.settings} spellcheck={false}
                              aria-label="Agent settings as a JSON object" aria-invalid={!!errors.settings}
                              aria-describedby={described('settings')}
                              placeholder='{"model": "…"}'
                              onInput={(e) => set('settings', (e.target as HTMLTextAreaElement).value)} />
                    {err('settings')}
                </details>
                <div class="actions">
                    <button type="submit" class="primary" disabled={sending}>
                        {sending ? 'Launching…' : 'Launch'} <kbd>Ctrl+Enter</kbd>
                    </button>
                    <button type="button" onClick={() => navigate('/')}>Cancel</button>
                </div>
            </form>
            {drafts.filter((d) => d.id !== draftId).length > 0 && (
                <aside class="drafts" aria-label="Saved drafts">
                    <h2>Drafts</h2>
                    <ul>
                        {drafts.filter((d) => d.id !== draftId).slice(0, 10).map((d) => (
                            <li key={d.id}>
                                <a href={`/new?draft=${d.id}`} onClick={(e) => {
                                    e.preventDefault();
                                    dirty.current = false;
                                    setForm(fromDraft(d, repos));
                                    setDraftId(d.id);
                                    history.replaceState(null, '', `/new?draft=${d.id}`);
                                }}>{(typeof d.prompt === 'string' ? d.prompt : '').split('\n')[0] || 'Untitled draft'}</a>
                                <Time iso={d.updatedAt} />
                                <button type="button" class="icon" aria-label="Delete draft" onClick={() => {
                                    api.deleteDraft(d.id).then(() => setDrafts((l) => l.filter((x) => x.id !== d.id)),
                                                                (e) => toastError(e, 'Deleting the draft'));
                                }}>×</button>
                            </li>
                        ))}
                    </ul>
                </aside>
            )}
        </section>
    );
}
