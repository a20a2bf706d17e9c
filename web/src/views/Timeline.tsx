// Timeline.tsx — the session's timeline: its moments (tool boundaries, marks a user made) and
// workspace snapshots on one scale, from GET …/timeline, reloaded when an event that can change
// it arrives. Seeking (a marker, a row, or the slider) asks the server for a read-only view of
// the workspace at that point (POST …/seek) and shows that point's files and diffs below it,
// read with ?to=<snapshot> from the files-and-diffs endpoints. Marking a moment and taking a
// snapshot are the POST routes of the same API. "Branch from here" starts a new session from a
// snapshot (POST …/session-branch) and opens it; the session's branches are listed below.
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, type BranchBody, type FsSnapshot, type Moment, type Schemas, type SeekRequest, type SeekResult,
         type Timeline } from '../api';
import { Link, StatusBadge, Time, navigate } from '../ui';
import { FilesView, problemText, useLoad } from './Files';

type Item = { at: number; seq: number } & ({ what: 'moment'; m: Moment } | { what: 'snapshot'; s: FsSnapshot });

function seconds(ts: number): string {
    if (ts < 60) return `${ts.toFixed(ts < 10 ? 2 : 1)} s`;
    const m = Math.floor(ts / 60);
    return `${m} min ${Math.round(ts - m * 60)} s`;
}

export function TimelineView(props: { id: string; timelineSeq: number; active: boolean }): JSX.Element {
    const [reload, setReload] = useState(0);
    const tl = useLoad<Timeline>((s) => api.timeline(props.id, s), [props.id, props.timelineSeq, reload]);
    const [seek, setSeek] = useState<SeekResult | null>(null);
    const [seekError, setSeekError] = useState<string | null>(null);
    const [busy, setBusy] = useState(false);
    const [label, setLabel] = useState('');
    const [slider, setSlider] = useState<number | null>(null);
    const [branchFrom, setBranchFrom] = useState<FsSnapshot | null>(null);
    const branches = useLoad<Schemas['BranchList']>((s) => api.sessionBranches(props.id, s),
                                                   [props.id, props.timelineSeq, reload]);

    const doSeek = async (body: SeekRequest) => {
        setBusy(true);
        setSeekError(null);
        try {
            setSeek(await api.seek(props.id, body));
        } catch (e) {
            setSeekError(problemText(e));
        } finally {
            setBusy(false);
        }
    };
    const mark = async (kind: 'moment' | 'snapshot') => {
        setBusy(true);
        setSeekError(null);
        try {
            if (kind === 'moment') await api.addMoment(props.id, label.trim());
            else await api.takeSnapshot(props.id, label.trim());
            setLabel('');
            setReload((n) => n + 1);
        } catch (e) {
            setSeekError(problemText(e));
        } finally {
            setBusy(false);
        }
    };

    if (tl === null) return <p class="muted tl-wrap">Loading the timeline…</p>;
    if (tl.error !== null) return <p class="notice error tl-wrap" role="alert">{tl.error}</p>;
    const t = tl.data;
    const items: Item[] = [
        ...t.moments.map((m): Item => ({ at: m.ts, seq: m.seq ?? 0, what: 'moment', m })),
        ...t.fsSnapshots.map((s): Item => ({ at: s.ts, seq: s.seq ?? 0, what: 'snapshot', s })),
    ].sort((a, b) => a.at - b.at || a.seq - b.seq);
    // The scale: the recording's length, or the latest mark when one lies past it.
    const span = Math.max(t.durationSec, ...items.map((i) => i.at), 0.001);
    const pct = (ts: number) => `${Math.min(100, (ts / span) * 100).toFixed(3)}%`;
    const seekTo = (i: Item) => void doSeek(i.what === 'snapshot' ? { fsSnapshotId: i.s.id }
        : i.m.fsSnapshotId ? { fsSnapshotId: i.m.fsSnapshotId } : { seq: Math.max(1, i.seq) });
    const current = seek?.fsSnapshotId;
    return (
        <div class="tl-wrap">
            <div class="tl-scale" role="group" aria-label={`Timeline, ${seconds(span)}`}>
                <div class="tl-track">
                    {items.map((i) => {
                        const id = i.what === 'moment' ? i.m.id : i.s.id;
                        const name = i.what === 'moment' ? `Moment ${i.m.label}` : `Snapshot ${i.s.label ?? i.s.id}`;
                        const on = i.what === 'snapshot' ? i.s.id === current : i.m.fsSnapshotId === current;
                        return (
                            <button key={`${i.what}-${id}`} type="button" data-id={id}
                                    class={`tl-marker tl-${i.what}${on ? ' current' : ''}`}
                                    aria-label={`${name} at ${seconds(i.at)}: view the workspace there`}
                                    title={`${name} · ${seconds(i.at)}`} style={{ left: pct(i.at) }}
                                    onClick={() => seekTo(i)} />
                        );
                    })}
                    {seek && <span class="tl-cursor" aria-hidden="true" style={{ left: pct(seek.seekTime) }} />}
                </div>
                <input type="range" class="tl-slider" min={0} max={span} step={span / 1000}
                       value={slider ?? seek?.seekTime ?? span} aria-label="Seek the workspace to a time"
                       onInput={(e) => setSlider(Number((e.target as HTMLInputElement).value))}
                       onChange={(e) => {
                           setSlider(null);
                           void doSeek({ ts: Number((e.target as HTMLInputElement).value) });
                       }} />
                <div class="tl-ends"><span>0 s</span><span>{seconds(span)}</span></div>
            </div>

            <form class="tl-mark" onSubmit={(e) => { e.preventDefault(); if (label.trim()) void mark('moment'); }}>
                <input value={label} placeholder="Name this moment…" aria-label="Moment name" maxLength={256}
                       onInput={(e) => setLabel((e.target as HTMLInputElement).value)} />
                <button type="submit" disabled={busy || !label.trim()}>Mark moment</button>
                {props.active && <button type="button" disabled={busy} onClick={() => void mark('snapshot')}>Take snapshot</button>}
            </form>
            {seekError && <p class="notice error" role="alert">{seekError}</p>}

            <ol class="tl-list" aria-label="Moments and snapshots">
                {items.map((i) => {
                    const id = i.what === 'moment' ? i.m.id : i.s.id;
                    const kind = i.what === 'moment' ? `${i.m.kind} moment` : `${i.s.kind ?? 'auto'} snapshot`;
                    const text = i.what === 'moment' ? i.m.label : (i.s.label ?? '');
                    const on = i.what === 'snapshot' ? i.s.id === current : !!i.m.fsSnapshotId && i.m.fsSnapshotId === current;
                    return (
                        <li key={`${i.what}-${id}`} class={`tl-item tl-${i.what}${on ? ' current' : ''}`} data-id={id}
                            data-kind={i.what}>
                            <span class="tl-at">{seconds(i.at)}</span>
                            <span class={`tl-kind tl-kind-${i.what}`}>{kind}</span>
                            <span class="tl-label">{text}{i.what === 'moment' && i.m.description ? ` — ${i.m.description}` : ''}</span>
                            {i.seq > 0 && <span class="muted tl-seq">after event {i.seq}</span>}
                            <button type="button" onClick={() => seekTo(i)} disabled={busy}>View files here</button>
                            {i.what === 'snapshot' && i.s.branchable && (
                                <button type="button" class="tl-branch" onClick={() => setBranchFrom(i.s)}
                                        aria-expanded={branchFrom?.id === i.s.id}>Branch from here</button>
                            )}
                        </li>
                    );
                })}
                {items.length === 0 && <li class="empty">No moment or snapshot yet.</li>}
            </ol>

            {branchFrom && <BranchForm id={props.id} from={branchFrom} onCancel={() => setBranchFrom(null)} />}

            {branches?.data && branches.data.total > 0 && (
                <section class="tl-branches" aria-label="Branches of this session">
                    <h2>Branches</h2>
                    <ul>
                        {branches.data.branches.map((b) => (
                            <li key={b.id} data-id={b.id}>
                                <Link href={`/sessions/${b.id}`}>{b.name}</Link> <StatusBadge status={b.status} />
                                <span class="muted"> from {seconds(b.branchFromTs)}{b.seq ? `, after event ${b.seq}` : ''} · <Time iso={b.createdAt} /></span>
                            </li>
                        ))}
                    </ul>
                </section>
            )}
            {branches?.error && <p class="notice error" role="alert">{branches.error}</p>}

            {seek && (
                <section class="tl-seek" aria-label="The workspace at the chosen point">
                    <p class="seek-state" role="status">
                        The workspace at <strong>{seconds(seek.seekTime)}</strong>
                        {seek.seq ? <> (after event {seek.seq})</> : null}: snapshot <code>{seek.fsSnapshotId}</code>,
                        read-only at <code>{seek.mountPath}</code>.{' '}
                        <button type="button" onClick={() => setSeek(null)}>Close</button>
                    </p>
                    <FilesView key={seek.fsSnapshotId} id={props.id} changeSeq={0} at={seek.fsSnapshotId} />
                </section>
            )}
        </div>
    );
}

/** Branch from a snapshot: a name, the new agent's prompt and, optionally, agent settings. */
function BranchForm(props: { id: string; from: FsSnapshot; onCancel: () => void }): JSX.Element {
    const [name, setName] = useState('');
    const [message, setMessage] = useState('');
    const [settings, setSettings] = useState('');
    const [error, setError] = useState<string | null>(null);
    const [busy, setBusy] = useState(false);
    const submit = async () => {
        setError(null);
        const body: BranchBody = { fsSnapshotId: props.from.id };
        if (name.trim()) body.name = name.trim();
        if (message.trim()) body.injectedMessage = message;
        if (settings.trim()) {
            try {
                body.agents = [{ settings: JSON.parse(settings) as Record<string, unknown> }];
            } catch (e) {
                setError(`The agent settings are not JSON: ${String(e)}`);
                return;
            }
        }
        setBusy(true);
        try {
            const b = await api.branch(props.id, body);
            navigate(`/sessions/${b.id}`);
        } catch (e) {
            setError(problemText(e));
        } finally {
            setBusy(false);
        }
    };
    return (
        <form class="tl-branch-form" aria-label="Branch from a snapshot"
              onSubmit={(e) => { e.preventDefault(); void submit(); }}>
            <h2>Branch from {props.from.label ?? props.from.id} ({seconds(props.from.ts)})</h2>
            <p class="muted">A new session starts from the workspace as it was at this snapshot, with this
                session's events up to there; its agent gets the message below as its prompt.</p>
            <label for="br-name">Name</label>
            <input id="br-name" value={name} maxLength={128} placeholder="optional"
                   onInput={(e) => setName((e.target as HTMLInputElement).value)} />
            <label for="br-message">Message to the agent</label>
            <textarea id="br-message" rows={3} value={message} maxLength={16384}
                      onInput={(e) => setMessage((e.target as HTMLTextAreaElement).value)} />
            <details>
                <summary>Agent settings (JSON, replaces this session's)</summary>
                <textarea id="br-settings" rows={4} value={settings}
                          onInput={(e) => setSettings((e.target as HTMLTextAreaElement).value)} />
            </details>
            {error && <p class="field-error" role="alert">{error}</p>}
            <div class="actions">
                <button type="submit" class="primary" disabled={busy}>Start the branch</button>
                <button type="button" onClick={props.onCancel}>Cancel</button>
            </div>
        </form>
    );
}
