// webui.mjs — the web UI's benchmark (issue 14). Prints numbers; never fails on speed.
//
//   AH_BIN=build/ah node bench/webui.mjs [--events N]
//
// On a fresh `ah webui` with a temp database, in Debian's headless Chromium:
//   1. first load of / : first contentful paint, with an empty HTTP cache (the browser itself
//      already started) and warm (median of 5);
//   2. a session of N events (default 20,000; a scripted agent logging N lines, run to the end
//      before the page opens): time from navigation until every event is in the page's store
//      and the log is rendered;
//   3. scrolling that log: the page scrolls it by 400 px per frame for 3 s; frames per second
//      and the 95th-percentile frame time, from requestAnimationFrame timestamps;
//   4. the feed with S active sessions (default 200; --sessions S): the server runs 4 at a time
//      (each logging every 250 ms), the rest wait queued; the share of 10 s the page's main
//      thread was busy (Chromium's TaskDuration metric), then every session is cancelled.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LONG, checkServerLog, createTask, fail, historyTotal, launchBrowser, sessionStatus,
         startServer, stopServer, waitReady } from '../tests/browser/harness.mjs';

const idx = process.argv.indexOf('--events');
const N = idx > 0 ? Number(process.argv[idx + 1]) : 20000;
const sidx = process.argv.indexOf('--sessions');
const S = sidx > 0 ? Number(process.argv[sidx + 1]) : 200;

function median(xs) {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)];
}

async function fcp(page, url) {
    await page.goto(url, { waitUntil: 'load' });
    return page.evaluate(() => new Promise((resolve) => {
        const e = performance.getEntriesByName('first-contentful-paint')[0];
        if (e) return resolve(e.startTime);
        new PerformanceObserver((l) => resolve(l.getEntries()[0].startTime))
            .observe({ type: 'paint', buffered: true });
    }));
}

async function main() {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ah-webui-bench-'));
    let server = null, context = null;
    try {
        server = await startServer(tmp, 0, ['--max-concurrent-tasks', '4']);
        const base = `http://127.0.0.1:${server.port}`;
        await waitReady(base);
        context = await launchBrowser(path.join(tmp, 'profile'));
        const page = context.pages()[0] || await context.newPage();

        // 1. first load
        // The browser's own first-navigation start-up is not the page's: warm it on another
        // URL, then empty the HTTP cache so the UI's files are fetched afresh.
        await page.goto(base + '/api/v1/healthz');
        const cdp = await context.newCDPSession(page);
        await cdp.send('Network.clearBrowserCache');
        const cold = await fcp(page, base + '/');
        const warm = [];
        for (let i = 0; i < 5; i++) warm.push(await fcp(page, base + '/'));
        console.log(`first contentful paint of /: cold ${cold.toFixed(0)} ms, warm median ${median(warm).toFixed(0)} ms`);

        // 2. a session of N events
        const steps = [];
        for (let i = 1; i <= N; i++) steps.push({ log: `line ${i} of the benchmark session` });
        const id = await createTask(base, `Benchmark: ${N} log lines`, steps);
        const deadline = Date.now() + 10 * LONG;
        while (!['completed', 'failed', 'stopped', 'cancelled'].includes(await sessionStatus(base, id))) {
            if (Date.now() > deadline) fail('the benchmark session did not end');
            await new Promise((r) => setTimeout(r, 200));
        }
        const total = await historyTotal(base, id);
        const t0 = Date.now();
        await page.goto(`${base}/sessions/${id}`, { waitUntil: 'load' });
        await page.waitForFunction((n) => Number(document.querySelector('.event-log')
            ?.getAttribute('aria-rowcount')) >= n && document.querySelector('.conn-ended'),
                                   total, { timeout: 10 * LONG, polling: 'raf' });
        const loaded = Date.now() - t0;
        const rows = await page.$$eval('.event-log .log-row', (els) => els.length);
        console.log(`session of ${total} events: all loaded and rendered in ${loaded} ms ` +
                    `(${rows} rows in the DOM)`);

        // 3. scrolling; first the same loop without scrolling: the frame rate this browser
        // delivers at all on this machine (headless, no GPU, other work on the cores).
        const measure = (scroll) => page.evaluate((doScroll) => new Promise((resolve) => {
            const el = document.querySelector('.event-log');
            el.scrollTop = 0;
            const times = [];
            const end = performance.now() + 3000;
            const step = (t) => {
                times.push(t);
                if (doScroll) el.scrollTop += 400;
                if (t < end) requestAnimationFrame(step);
                else resolve(times);
            };
            requestAnimationFrame(step);
        }), scroll);
        const rate = (fr) => {
            const d = fr.slice(1).map((t, i) => t - fr[i]);
            return [d.length / ((fr[fr.length - 1] - fr[0]) / 1000), [...d].sort((a, b) => a - b)[Math.floor(d.length * 0.95)]];
        };
        const [idleFps, idleP95] = rate(await measure(false));
        console.log(`idle page: ${idleFps.toFixed(1)} frames/s, p95 frame ${idleP95.toFixed(1)} ms (the ceiling here)`);
        const frames = await page.evaluate(() => new Promise((resolve) => {
            const el = document.querySelector('.event-log');
            el.scrollTop = 0;
            const times = [];
            const end = performance.now() + 3000;
            const step = (t) => {
                times.push(t);
                el.scrollTop += 400;
                if (t < end) requestAnimationFrame(step);
                else resolve(times);
            };
            requestAnimationFrame(step);
        }));
        const deltas = frames.slice(1).map((t, i) => t - frames[i]);
        const fps = deltas.length / ((frames[frames.length - 1] - frames[0]) / 1000);
        const p95 = [...deltas].sort((a, b) => a - b)[Math.floor(deltas.length * 0.95)];
        console.log(`scrolling the log: ${fps.toFixed(1)} frames/s, p95 frame ${p95.toFixed(1)} ms ` +
                    `(headless Chromium, --disable-gpu)`);

        // 4. the feed with S active sessions
        const ticking = [];
        for (let i = 0; i < 400; i++) ticking.push({ log: `tick ${i}` }, { sleep: 250 });
        const ids = [];
        for (let i = 0; i < S; i++) ids.push(await createTask(base, `Feed load ${i + 1}`, ticking));
        await page.goto(base + '/', { waitUntil: 'load' });
        await page.waitForSelector('.card .live', { timeout: LONG });
        const cdp2 = await context.newCDPSession(page);
        await cdp2.send('Performance.enable');
        const busy = async () => (await cdp2.send('Performance.getMetrics')).metrics
            .find((m) => m.name === 'TaskDuration').value;
        const b0 = await busy(), w0 = Date.now();
        await page.waitForTimeout(10000);
        const share = (await busy() - b0) / ((Date.now() - w0) / 1000);
        const live = await page.$$eval('.card .live', (els) => els.length);
        console.log(`feed with ${S} active sessions (${live} cards following live, the rest ` +
                    `refreshed every 3 s): main thread busy ${(share * 100).toFixed(1)} % of 10 s`);
        for (const id of ids) await fetch(`${base}/api/v1/sessions/${id}`, { method: 'DELETE' });
    } finally {
        if (context) await context.close();
        if (server) checkServerLog(server, await stopServer(server.child));
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}

main().catch((e) => {
    console.error('web UI benchmark failed: ' + (e && e.stack || e));
    process.exit(1);
});
