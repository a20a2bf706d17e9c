// build.mjs — builds the web UI into <out>/dist for embedding (run by cmake/web.cmake).
//
//   node web/build.mjs --out <dir>
//
// 1. <out>/gen/openapi.d.ts: the API's types, generated from api/openapi.json (openapi-typescript).
// 2. tsc --noEmit over web/src with those types (strict): a type error fails the build.
// 3. esbuild bundles web/src/main.tsx (+ its CSS) minified, with content-hashed names under assets/.
// 4. index.html names the hashed files; public/ is copied; every file gets a .gz twin (level 9).
// 5. The budget: the gzipped JS + CSS must stay ≤ 250 KB, or the build fails.
// Nothing here touches the network: every tool comes from node_modules.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import zlib from 'node:zlib';
import * as esbuild from 'esbuild';
import openapiTS, { astToString } from 'openapi-typescript';

const BUDGET_GZ = 250 * 1024;
const here = path.dirname(fileURLToPath(import.meta.url));
const top = path.resolve(here, '..');

const args = process.argv.slice(2);
const outIdx = args.indexOf('--out');
if (outIdx < 0 || !args[outIdx + 1]) {
    console.error('usage: node web/build.mjs --out <dir>');
    process.exit(2);
}
const out = path.resolve(args[outIdx + 1]);
const gen = path.join(out, 'gen');
const dist = path.join(out, 'dist');

function fail(msg) {
    console.error('web build: ' + msg);
    process.exit(1);
}

// Writes only when the content changed, so tsc and make see stable timestamps.
function writeIfChanged(file, text) {
    if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') === text) return;
    fs.writeFileSync(file, text);
}

async function generateTypes() {
    fs.mkdirSync(gen, { recursive: true });
    const spec = pathToFileURL(path.join(top, 'api', 'openapi.json'));
    const ast = await openapiTS(spec, { silent: true });
    writeIfChanged(path.join(gen, 'openapi.d.ts'),
                   '// generated from api/openapi.json by web/build.mjs — do not edit\n' +
                   astToString(ast));
    // A tsconfig in the build tree: the sources' settings, plus where the generated types are.
    const tsconfig = {
        extends: path.join(here, 'tsconfig.json'),
        compilerOptions: {
            noEmit: true,
            paths: { '@api/openapi': [path.join(gen, 'openapi.d.ts')] },
            tsBuildInfoFile: path.join(gen, 'tsbuildinfo'),
            incremental: true,
        },
        include: [path.join(here, 'src')],
    };
    writeIfChanged(path.join(gen, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2) + '\n');
}

function typeCheck() {
    const tsc = path.join(top, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', path.join(gen, 'tsconfig.json')],
                        { stdio: 'inherit' });
    if (r.status !== 0) fail('type errors (tsc) — see above');
}

async function bundle() {
    fs.rmSync(dist, { recursive: true, force: true });
    fs.mkdirSync(path.join(dist, 'assets'), { recursive: true });
    const result = await esbuild.build({
        entryPoints: [path.join(here, 'src', 'main.tsx')],
        bundle: true,
        minify: true,
        format: 'esm',
        target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
        jsx: 'automatic',
        jsxImportSource: 'preact',
        outdir: path.join(dist, 'assets'),
        entryNames: '[name]-[hash]',
        assetNames: '[name]-[hash]',
        metafile: true,
        legalComments: 'none',
        logLevel: 'warning',
        define: { 'process.env.NODE_ENV': '"production"' },
        absWorkingDir: top,
    });
    if (result.errors.length) fail('esbuild failed');
    let js = null, css = null;
    for (const [file, info] of Object.entries(result.metafile.outputs)) {
        const rel = path.relative(dist, path.resolve(top, file)).split(path.sep).join('/');
        if (info.entryPoint && rel.endsWith('.js')) js = rel;
        else if (rel.endsWith('.css')) css = rel;
    }
    if (!js || !css) fail('esbuild wrote no JS or no CSS entry');
    const html = fs.readFileSync(path.join(here, 'src', 'index.html'), 'utf8')
        .replace('%CSS%', '/' + css).replace('%JS%', '/' + js);
    fs.writeFileSync(path.join(dist, 'index.html'), html);
    for (const f of fs.readdirSync(path.join(here, 'public')))
        fs.copyFileSync(path.join(here, 'public', f), path.join(dist, f));
    return [js, css];
}

function gzipAll() {
    const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]);
    const sizes = {};
    for (const f of walk(dist)) {
        const z = zlib.gzipSync(fs.readFileSync(f), { level: 9 });
        fs.writeFileSync(f + '.gz', z);
        sizes[path.relative(dist, f).split(path.sep).join('/')] = z.length;
    }
    return sizes;
}

await generateTypes();
typeCheck();
const entries = await bundle();
const sizes = gzipAll();
const total = entries.reduce((n, f) => n + sizes[f], 0);
if (total > BUDGET_GZ) fail(`bundle is ${total} bytes gzipped, over the ${BUDGET_GZ} budget`);
console.log(`web build: ${entries.join(', ')} — ${(total / 1024).toFixed(1)} KiB gzipped`);
