// harness.mjs — what the browser tests and the web UI benchmark share: a real `ah webui` on a
// free port with a temp database, headless Chromium (Debian's) through playwright-core, and a
// few API calls made from node.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const ahBin = process.env.AH_BIN || path.join(here, '..', '..', 'build', 'ah');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const SANITIZER_MARKERS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:',
                           'UndefinedBehaviorSanitizer'];
export const LONG = 60000; /* generous waits: the machine may be busy */

export function fail(msg) {
    throw new Error(msg);
}

function env(tmp) {
    const e = { ...process.env };
    for (const k of Object.keys(e)) if (k.startsWith('AH_')) delete e[k];
    Object.assign(e, {
        HOME: tmp,
        XDG_CONFIG_HOME: path.join(tmp, 'config'),
        XDG_DATA_HOME: path.join(tmp, 'data'),
        XDG_STATE_HOME: path.join(tmp, 'state'),
        XDG_RUNTIME_DIR: path.join(tmp, 'run'),
    });
    fs.mkdirSync(e.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
    return e;
}

// Starts `ah webui` and resolves with its port, read from the JSON "listening" log line.
// command: ['webui'] (default) or ['agent', 'access-point'].
export function startServer(tmp, port = 0, extra = [], command = ['webui']) {
    const child = spawn(ahBin, [...command, '--port', String(port), '--db', path.join(tmp, 'state.db'),
                                ...extra],
                        { env: env(tmp), stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderrText = '';
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('ah did not start listening:\n' +
                                                        child.stderrText)), LONG);
        child.on('error', (e) => { clearTimeout(timer); reject(e); });
        child.on('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`ah exited with ${code} before listening:\n${child.stderrText}`));
        });
        let listening = false;
        child.stderr.on('data', (chunk) => {
            child.stderrText += chunk.toString();
            if (listening) return;
            for (const line of child.stderrText.split('\n')) {
                try {
                    const rec = JSON.parse(line);
                    if (rec.msg === 'listening' && rec.port) {
                        listening = true;
                        clearTimeout(timer);
                        child.removeAllListeners('exit');
                        resolve({ child, port: rec.port });
                        return;
                    }
                } catch { /* not a complete JSON line yet */ }
            }
        });
    });
}

export function stopServer(child) {
    return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
        const timer = setTimeout(() => child.kill('SIGKILL'), LONG);
        child.on('exit', (code, signal) => { clearTimeout(timer); resolve(signal || code); });
        child.kill('SIGTERM');
    });
}

// Unmounts what the server mounted under tmp (its branches' overlay workspaces outlive it by
// design), deepest first, so a test leaves no mount behind and never deletes through one.
export function unmountUnder(tmp) {
    const root = fs.realpathSync(tmp).replace(/\/$/, '') + '/';
    const points = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
        .map((l) => (l.split(' ')[4] || '').replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))))
        .filter((p) => (p.replace(/\/$/, '') + '/').startsWith(root))
        .sort((a, b) => b.length - a.length);
    for (const p of points) {
        const r = spawnSync('umount', ['-l', p], { stdio: 'inherit' });
        if (r.status !== 0) fail(`cannot unmount ${p}`);
    }
}

export function checkServerLog(server, code) {
    const text = server.child.stderrText;
    for (const m of SANITIZER_MARKERS)
        if (text.includes(m)) fail('sanitizer report in ah\'s stderr:\n' + text.slice(-6000));
    if (code !== 0) fail(`ah exited with ${code}:\n${text.slice(-4000)}`);
}

export async function waitReady(base) {
    const deadline = Date.now() + LONG;
    while (Date.now() < deadline) {
        try {
            const r = await fetch(base + '/api/v1/readyz');
            if (r.status === 200) return;
        } catch { /* not yet */ }
        await new Promise((r) => setTimeout(r, 50));
    }
    fail('the server never became ready');
}

export async function createTask(base, prompt, scenario) {
    const r = await fetch(base + '/api/v1/tasks', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt, repo: { mode: 'none' }, runtime: { type: 'local' },
                               agents: [{ type: 'scripted', settings: { scenario } }] }),
    });
    if (r.status !== 201) fail(`POST /tasks answered ${r.status}: ${await r.text()}`);
    return (await r.json()).id;
}

export async function historyTotal(base, id) {
    const r = await fetch(`${base}/api/v1/sessions/${id}/events?perPage=1`);
    if (r.status !== 200) fail(`events history answered ${r.status}`);
    return (await r.json()).total;
}

export async function sessionStatus(base, id) {
    const r = await fetch(`${base}/api/v1/sessions/${id}`);
    return (await r.json()).status;
}


// A fresh profile per run (launchPersistentContext passes --user-data-dir itself).
export function launchBrowser(profileDir, viewport = { width: 1280, height: 860 }) {
    return chromium.launchPersistentContext(profileDir, {
        executablePath: chromiumPath,
        headless: true,
        viewport,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync'],
    });
}
