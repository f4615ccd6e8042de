// Drive the mask2face page in the system's headless Chromium (playwright-core: no browser download) and write
// what it returns for each photo: OUT/<name>.rgb (raw RGB), OUT/<name>.json (faces, per-stage ms, what ran), and
// OUT/page.json (page load to ready, load to first result).
//
//   node web/tests/run_page.mjs --url http://127.0.0.1:8765/ --out /tmp/page [--accelerator wasm|webgpu|auto]
//        [--screenshot page.png] [--repeat N] photo.png [photo2.png ...]

import {readFileSync, writeFileSync, mkdirSync, existsSync} from 'node:fs';
import {basename, extname, join} from 'node:path';
import {chromium} from 'playwright-core';

const args = process.argv.slice(2), opt = {accelerator: 'wasm', repeat: '1'}, photos = [];
for (let i = 0; i < args.length; i++) {
  if (args[i].startsWith('--')) opt[args[i].slice(2)] = args[++i];
  else photos.push(args[i]);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  console.error(`Chromium not found at ${executablePath}: install it (Debian: apt-get install -y chromium) or set CHROMIUM`);
  process.exit(3);
}
mkdirSync(opt.out, {recursive: true});
let browser;
try {
  browser = await chromium.launch({executablePath, headless: true,
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader', '--use-webgpu-adapter=swiftshader']});
} catch (e) {
  console.error(`Chromium at ${executablePath} did not start: ${String(e.message || e).split('\n')[0]}`);
  process.exit(3);
}
const page = await browser.newPage({viewport: {width: 1200, height: 900}});
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(m.text()); });
const t0 = Date.now();
await page.goto(`${opt.url}?accelerator=${opt.accelerator}`);
let runtime;
try {
  runtime = await page.evaluate(() => window.mask2face.ready);
} catch (e) {
  console.error(`the page did not load its models: ${e.message}\n${errors.join('\n')}`);
  await browser.close();
  process.exit(4);
}
const ready = Date.now() - t0, summary = {ready_ms: ready, runtime, photos: {}, console: errors};
for (const [n, photo] of photos.entries()) {
  const name = basename(photo, extname(photo)), b64 = readFileSync(photo).toString('base64');
  let result;
  for (let r = 0; r < Number(opt.repeat); r++) {
    result = await page.evaluate(([data, type]) => window.mask2face.removeEncoded(data, type),
                                 [b64, extname(photo).toLowerCase() === '.png' ? 'image/png' : 'image/jpeg']);
    if (n === 0 && r === 0) summary.first_result_ms = Date.now() - t0;
    (summary.photos[name] ??= []).push(result.timings);
  }
  writeFileSync(join(opt.out, `${name}.rgb`), Buffer.from(result.rgb, 'base64'));
  writeFileSync(join(opt.out, `${name}.input.rgb`), Buffer.from(result.input_rgb, 'base64'));
  delete result.rgb; delete result.input_rgb;
  writeFileSync(join(opt.out, `${name}.json`), JSON.stringify(result, null, 1));
}
if (opt.screenshot) await page.screenshot({path: opt.screenshot, fullPage: true});
writeFileSync(join(opt.out, 'page.json'), JSON.stringify(summary, null, 1));
await browser.close();
