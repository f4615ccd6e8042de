// The page around mask2face.js: photo or camera in, before | after, the faces found with their mask decision, and
// the time of each stage. window.mask2face is what tests/test_web.py drives.

import {Remover} from './mask2face.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

async function pickAccelerator(choice) {
  if (choice !== 'auto') return choice;
  try { return navigator.gpu && (await navigator.gpu.requestAdapter()) ? 'webgpu' : 'wasm'; } catch { return 'wasm'; }
}

let remover = null;
async function load(choice) {
  $('status').textContent = 'Loading models…';
  const accelerator = await pickAccelerator(choice);
  const threads = Number(params.get('threads') || navigator.hardwareConcurrency || 1);
  remover = await Remover.create({base: './', accelerator, threads});
  const d = remover.describe();
  $('status').textContent = `Ready: inpainting on ${d.accelerator}, ${d.threads} thread(s), models loaded in ` +
    `${d.load_ms.toFixed(0)} ms.${d.fallbacks.length ? ' ' + d.fallbacks.join('; ') : ''}`;
  return remover;
}

function toRgb(source, width, height) {
  const canvas = new OffscreenCanvas(width, height), ctx = canvas.getContext('2d', {colorSpace: 'srgb'});
  ctx.drawImage(source, 0, 0);
  const rgba = ctx.getImageData(0, 0, width, height).data, data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) { data[j] = rgba[i]; data[j + 1] = rgba[i + 1]; data[j + 2] = rgba[i + 2]; }
  return {width, height, channels: 3, data};
}

function draw(canvas, img) {
  canvas.width = img.width; canvas.height = img.height;
  const rgba = new Uint8ClampedArray(img.width * img.height * 4);
  for (let i = 0, j = 0; j < img.data.length; i += 4, j += 3) { rgba[i] = img.data[j]; rgba[i + 1] = img.data[j + 1]; rgba[i + 2] = img.data[j + 2]; rgba[i + 3] = 255; }
  canvas.getContext('2d').putImageData(new ImageData(rgba, img.width, img.height), 0, 0);
}

function table(el, rows) {
  if (!rows.length) { el.innerHTML = ''; return; }
  const keys = Object.keys(rows[0]);
  el.innerHTML = `<tr>${keys.map((k) => `<th>${k}</th>`).join('')}</tr>` +
    rows.map((r) => `<tr>${keys.map((k) => `<td>${r[k] ?? ''}</td>`).join('')}</tr>`).join('');
}

async function run(img) {
  const t0 = performance.now();
  const result = await remover.remove(img);
  result.timings.total = performance.now() - t0;
  draw($('before'), img); draw($('after'), result.image);
  const restored = result.faces.filter((f) => f.pasted).length;
  $('status').textContent = result.faces.length
    ? `${result.faces.length} face(s), ${restored} restored, in ${result.timings.total.toFixed(0)} ms (inpainting on ${remover.describe().accelerator}).`
    : 'No face found (CenterFace); the photo is unchanged.';
  table($('faces'), result.faces.map((f, i) => ({face: i + 1, box: f.box.map((v) => v.toFixed(0)).join(', '), score: f.score.toFixed(2),
    'mask probability': f.mask_probability === null ? '' : f.mask_probability.toFixed(2), restored: f.pasted ? 'yes' : 'no', why: f.reason || ''})));
  table($('timings'), [Object.fromEntries(Object.entries(result.timings).map(([k, v]) => [k + ' (ms)', v.toFixed(1)]))]);
  return result;
}

async function runFile(file) {
  const bitmap = await createImageBitmap(file, {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  return run(toRgb(bitmap, bitmap.width, bitmap.height));
}

$('file').addEventListener('change', (e) => e.target.files[0] && runFile(e.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); if (e.dataTransfer.files[0]) runFile(e.dataTransfer.files[0]); });
$('accelerator').addEventListener('change', (e) => load(e.target.value));
$('camera').addEventListener('click', async () => {
  const video = $('video');
  video.srcObject = await navigator.mediaDevices.getUserMedia({video: true});
  video.hidden = false; $('snap').hidden = false;
  await video.play();
});
$('snap').addEventListener('click', () => { const v = $('video'); run(toRgb(v, v.videoWidth, v.videoHeight)); });

const choice = params.get('accelerator') || 'auto';
$('accelerator').value = choice;
const ready = load(choice).catch((e) => { $('status').innerHTML = `<span class="error">${e.message || e}</span>`; throw e; });

// For tests and scripts: run a PNG/JPEG given as base64 and get the result as base64 RGB.
window.mask2face = {
  ready: ready.then(() => remover.describe()),
  async removeEncoded(base64, type = 'image/png') {
    await ready;
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes], {type}), {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
    const input = toRgb(bitmap, bitmap.width, bitmap.height);
    const result = await run(input);
    let s = '';
    for (let i = 0; i < result.image.data.length; i += 0x8000) s += String.fromCharCode(...result.image.data.subarray(i, i + 0x8000));
    let t = '';
    for (let i = 0; i < input.data.length; i += 0x8000) t += String.fromCharCode(...input.data.subarray(i, i + 0x8000));
    return {width: result.image.width, height: result.image.height, rgb: btoa(s), input_rgb: btoa(t), faces: result.faces,
            timings: result.timings, runtime: remover.describe()};
  },
};
