// The mask2face runtime in the browser: find faces -> eye-aligned crop -> is a mask there? -> inpaint -> paste back,
// the same steps as edge_runtime/inpaint.py, running the same .tflite files with LiteRT.js.
//
//   import {Remover} from './mask2face.js';
//   const remover = await Remover.create({base: '/', accelerator: 'wasm'});
//   const {image, faces, timings} = await remover.remove(rgb);   // rgb: {width, height, channels: 3, data: Uint8Array}
//
// Every setting comes from the server's /runtime.json (edge_runtime/runtime_spec.py) and from the models' own
// metadata; nothing here is a tuned number. Faces are found as detect.FaceDetector finds them: CenterFace (whole
// photo, and 2x2 tiles for big photos) with each face's eyes refined by BlazeFace's closer look; where CenterFace
// finds none (close-ups that fill the photo), the BlazeFace-only cascade of views (whole photo, mirror, tiles,
// padded copy, the short-range model) with its confirmation rules.

import {loadLiteRt, loadAndCompile, Tensor} from '@litertjs/core';
import * as ops from './imageops.js';
import {mask2faceMetadata} from './tflite_metadata.js';

const now = () => performance.now();

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

// One .tflite compiled for an accelerator, run on Float32Array inputs; outputs as Float32Arrays.
class Net {
  static async load(url, accelerator, threads) {
    const bytes = await fetchBytes(url);
    const options = {accelerator};
    if (accelerator === 'wasm' && threads) options.cpuOptions = {numThreads: threads};
    const net = new Net();
    net.url = url;
    net.metadata = mask2faceMetadata(bytes);
    net.model = await loadAndCompile(bytes, options);
    net.accelerator = accelerator;
    net.fullyAccelerated = net.model.isFullyAccelerated;   // false: some ops fell back to WASM
    net.input = Array.from(net.model.getInputDetails()[0].shape);
    net.outputs = net.model.getOutputDetails().map((d) => ({name: d.name, shape: Array.from(d.shape)}));
    return net;
  }

  async run(data) {
    let input = new Tensor(data, this.input);
    if (this.accelerator !== 'wasm') input = await input.moveTo(this.accelerator);
    const results = await this.model.run([input]);
    input.delete();
    const out = [];
    for (const r of results) {
      const local = r.getBufferType && this.accelerator !== 'wasm' ? await r.moveTo('wasm') : r;
      out.push(Float32Array.from(local.toTypedArray()));
      local.delete();
      if (local !== r) r.delete();
    }
    return out;
  }
}

// --- geometry ------------------------------------------------------------------------------------------------

export function boxIou(a, b) {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const area = (q) => Math.max(0, q[2] - q[0]) * Math.max(0, q[3] - q[1]);
  const union = area(a) + area(b) - w * h;
  return union > 0 ? (w * h) / union : 0;
}

// align.framing_of + Framing.eyes: the crop settings for a model whose metadata names a `framing` (the eyes' height
// and distance as shares of the side); the runtime spec's canonical eyes (the default framing) where it names none.
export function framedCrop(crop, framing) {
  if (!framing) return crop;
  const half = framing.eye_distance / 2;
  return {...crop, canonical_left_eye: [0.5 - half, framing.eye_line], canonical_right_eye: [0.5 + half, framing.eye_line]};
}

// Framing.from_default_y: a height given for the default framing (eyes at 0.37, 0.3 apart) at the same place on the
// face in `crop`'s framing.
export function fromDefaultY(crop, y) {
  const eyeLine = crop.canonical_left_eye[1], distance = crop.canonical_right_eye[0] - crop.canonical_left_eye[0];
  return eyeLine === 0.37 && Math.abs(distance - 0.3) < 1e-12 ? y : eyeLine + (y - 0.37) * (distance / 0.3);
}

// Inpainter._area_scale: the area gates are given for the default framing; a face framed wider covers less of the crop.
export function areaScale(crop) {
  const distance = crop.canonical_right_eye[0] - crop.canonical_left_eye[0];
  return Math.abs(distance - 0.3) < 1e-12 ? 1 : (distance / 0.3) ** 2;
}

// align.similarity_from_eyes: the 2x3 matrix photo -> canonical crop of `size` px.
export function similarityFromEyes(left, right, size, crop) {
  const [sx0, sy0] = left, [sx1, sy1] = right;
  const dx0 = crop.canonical_left_eye[0] * size, dy0 = crop.canonical_left_eye[1] * size;
  const dx1 = crop.canonical_right_eye[0] * size, dy1 = crop.canonical_right_eye[1] * size;
  const zr = sx1 - sx0, zi = sy1 - sy0, n = zr * zr + zi * zi;
  if (n < 1e-12) throw new Error('eyes coincide');
  const wr = dx1 - dx0, wi = dy1 - dy0;
  const ar = (wr * zr + wi * zi) / n, ai = (wi * zr - wr * zi) / n;        // a = (zd1 - zd0) / (zs1 - zs0)
  const br = dx0 - (ar * sx0 - ai * sy0), bi = dy0 - (ai * sx0 + ar * sy0);
  return [ar, -ai, br, ai, ar, bi];
}

// detect.correct_eyes: move detector eyes onto dlib's eye centres (in eye-distance units, in the face's frame).
export function correctEyes(left, right, correction) {
  const ux = right[0] - left[0], uy = right[1] - left[1], d = Math.hypot(ux, uy);
  if (d < 1e-6) return [left, right];
  const u = [ux / d, uy / d], v = [-u[1], u[0]];
  const [lu, lv] = correction.left, [ru, rv] = correction.right;
  return [[left[0] + d * (lu * u[0] + lv * v[0]), left[1] + d * (lu * u[1] + lv * v[1])],
          [right[0] + d * (ru * u[0] + rv * v[0]), right[1] + d * (ru * u[1] + rv * v[1])]];
}

// --- CenterFace ----------------------------------------------------------------------------------------------

function letterboxTopLeft(img, height, width) {
  const scale = Math.min(width / img.width, height / img.height);
  const nw = Math.min(width, Math.max(1, Math.round(img.width * scale)));
  const nh = Math.min(height, Math.max(1, Math.round(img.height * scale)));
  // Resized as uint8, as cv2.resize does on the photo, then placed in the float canvas.
  const resized = scale < 1 ? ops.resizeArea(img, nw, nh) : ops.resizeLinear(img, nw, nh);
  const canvas = new Float32Array(width * height * 3);
  for (let y = 0; y < nh; y++) canvas.set(resized.data.subarray(y * nw * 3, (y + 1) * nw * 3), y * width * 3);
  return [canvas, scale];
}

function plainNms(boxes, scores, iou) {
  const order = scores.map((s, i) => i).sort((a, b) => scores[b] - scores[a] || a - b), keep = [];
  const suppressed = new Uint8Array(scores.length);
  for (const i of order) {
    if (suppressed[i]) continue;
    keep.push(i);
    for (const j of order) if (!suppressed[j] && j !== i && boxIou(boxes[i], boxes[j]) >= iou) suppressed[j] = 1;
  }
  return keep;
}

function decodeCenterFace(heads, shapes, spec, threshold) {
  const [heat, size, offset, marks] = heads, [, h, w] = shapes[0], stride = spec.stride;
  const boxes = [], points = [], scores = [];
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = y * w + x, s = heat[i];
      if (!(s >= threshold)) continue;
      const bh = Math.exp(size[2 * i]) * stride, bw = Math.exp(size[2 * i + 1]) * stride;
      const cy = (y + offset[2 * i] + 0.5) * stride, cx = (x + offset[2 * i + 1] + 0.5) * stride;
      const x0 = cx - bw / 2, y0 = cy - bh / 2, pts = [];
      for (let k = 0; k < 5; k++) pts.push([marks[10 * i + 2 * k + 1] * bw + x0, marks[10 * i + 2 * k] * bh + y0]);
      boxes.push([x0, y0, x0 + bw, y0 + bh]); points.push(pts); scores.push(s);
    }
  return plainNms(boxes, scores, spec.nms_iou).map((i) => ({box: boxes[i], points: points[i], score: scores[i]}));
}

function cropImage(img, x0, y0, w, h) {
  const out = ops.image(w, h, img.channels, img.data.constructor);
  for (let y = 0; y < h; y++)
    out.data.set(img.data.subarray(((y0 + y) * img.width + x0) * img.channels, ((y0 + y) * img.width + x0 + w) * img.channels),
                 y * w * img.channels);
  return out;
}

// detect.letterbox: resized keeping the aspect ratio into a size x size black square, centred.
function letterboxCentred(img, size) {
  const scale = size / Math.max(img.width, img.height);
  const nw = Math.max(1, pyRound(img.width * scale)), nh = Math.max(1, pyRound(img.height * scale));
  const resized = scale < 1 ? ops.resizeArea(img, nw, nh) : ops.resizeLinear(img, nw, nh);
  const px = Math.floor((size - nw) / 2), py = Math.floor((size - nh) / 2);
  const square = ops.image(size, size, 3, Uint8Array);
  for (let y = 0; y < nh; y++) square.data.set(resized.data.subarray(y * nw * 3, (y + 1) * nw * 3), ((py + y) * size + px) * 3);
  return [square, scale, px, py];
}

function shifted(faces, dx, dy, stage) {   // detect._shift (labelled `stage` when given)
  return faces.map((f) => ({...f, stage: stage ?? f.stage, box: [f.box[0] + dx, f.box[1] + dy, f.box[2] + dx, f.box[3] + dy],
                            keypoints: f.keypoints.map(([x, y]) => [x + dx, y + dy])}));
}

// inpaint.box_key: a face box as a map key (the closer look gives a face new eyes but keeps its box).
function boxKey(box) {
  return box.map((v) => Math.round(v * 1000) / 1000).join(',');
}

// mask_decision.combined: the geometric mean of the views' probabilities; NaN if any is NaN.
function combined(ps) {
  if (!ps.length || ps.some((p) => !Number.isFinite(p))) return NaN;
  if (ps.some((p) => p <= 0)) return 0;
  return Math.exp(ps.reduce((sum, p) => sum + Math.log(p), 0) / ps.length);
}

// detect._unflip: faces found on the mirrored image back to the image; the eyes (and ears) swap, so keypoint 0
// stays the image-left eye.
function unflip(faces, width, stage) {
  return faces.map((f) => {
    const kp = f.keypoints.map(([x, y]) => [width - x, y]);
    return {...f, stage, keypointModel: 'full_range', box: [width - f.box[2], f.box[1], width - f.box[0], f.box[3]],
            keypoints: [kp[1], kp[0], kp[2], kp[3], kp[5], kp[4]]};
  });
}

// detect.confirmed: faces at their stage's accept threshold, or at its confirmed threshold where another stage's
// face agrees (IoU >= iou), or at the cross threshold where the other model's views agree.
function confirmed(found, thresholds, iou, cross, family) {
  const agrees = (box, others) => others.some((o) => boxIou(box, o) >= iou);
  const keep = [];
  for (const [stage, faces] of found) {
    const [accept, low] = thresholds[stage];
    const others = [], otherModel = [];
    for (const [s, fs] of found) {
      for (const f of fs) {
        if (s !== stage && f.score >= thresholds[s][1]) others.push(f.box);
        if (s in cross && stage in cross && family[s] !== family[stage] && f.score >= cross[s]) otherModel.push(f.box);
      }
    }
    for (const f of faces)
      if (f.score >= accept || (f.score >= low && agrees(f.box, others))
          || (stage in cross && f.score >= cross[stage] && agrees(f.box, otherModel))) keep.push(f);
  }
  return keep;
}

// --- BlazeFace: the closer look that places the eyes, and the cascade where CenterFace finds no face ----------

function ssdAnchors(inputSize, strides, interpolated = 0) {   // detect.ssd_anchors (MediaPipe's, anchor size 1)
  const anchors = [];
  for (let layer = 0; layer < strides.length;) {
    let last = layer, repeats = 0;
    while (last < strides.length && strides[last] === strides[layer]) { last++; repeats += interpolated === 1 ? 2 : 1; }
    const n = Math.floor(inputSize / strides[layer]);
    for (let y = 0; y < n; y++)
      for (let x = 0; x < n; x++)
        for (let r = 0; r < repeats; r++) anchors.push([(x + 0.5) / n, (y + 0.5) / n]);
    layer = last;
  }
  return anchors;
}

function weightedNms(found, iou) {   // detect.weighted_nms
  let remaining = found.slice().sort((a, b) => b.score - a.score);
  const out = [];
  while (remaining.length) {
    const top = remaining[0];
    const group = remaining.filter((f) => boxIou(top.box, f.box) > iou);
    const members = group.length ? group : [top];
    const total = members.reduce((s, f) => s + f.score, 0);
    const box = [0, 1, 2, 3].map((k) => members.reduce((s, f) => s + f.box[k] * f.score, 0) / total);
    const keypoints = top.keypoints.map((_, j) => [0, 1].map((k) => members.reduce((s, f) => s + f.keypoints[j][k] * f.score, 0) / total));
    out.push({box, keypoints, score: top.score});
    remaining = remaining.filter((f) => f !== top && !(boxIou(top.box, f.box) > iou));
  }
  return out;
}

// --- the remover -----------------------------------------------------------------------------------------------

export class Remover {
  static async create({base = './', accelerator = 'wasm', threads = 0, litert = 'litert/core/wasm/'} = {}) {
    const t0 = now();
    const r = new Remover();
    r.spec = await (await fetch(new URL('runtime.json', new URL(base, location.href)))).json();
    const threaded = threads > 1 && self.crossOriginIsolated;
    await loadLiteRt(new URL(litert, new URL(base, location.href)).href, {threads: threaded});
    r.threads = threaded ? threads : 1;
    const models = new URL('models/', new URL(base, location.href));
    const load = async (name, acc) => {
      try {
        return await Net.load(new URL(name, models).href, acc, r.threads);
      } catch (e) {
        if (acc === 'wasm') throw e;
        r.fallbacks.push(`${name}: ${acc} failed (${String(e.message || e).slice(0, 200)}), ran on wasm`);
        return Net.load(new URL(name, models).href, 'wasm', r.threads);
      }
    };
    r.fallbacks = [];
    // The detectors stay on WASM: their decoding reads every output on the CPU anyway, and the inpainting model is
    // the one a GPU is for.
    r.centerface = await load('centerface.tflite', 'wasm');
    r.blazeface = await load(r.spec.blazeface.full.model, 'wasm');
    r.shortRange = await load(r.spec.blazeface.short.model, 'wasm');
    r.classifier = await load('mask2face_mask_classifier.tflite', 'wasm');
    r.inpainter = await load('mask2face_default.tflite', accelerator);
    r.size = r.inpainter.metadata.input_size[0];
    r.channels = r.inpainter.metadata.output_channels;
    r.maskChannel = r.channels.indexOf('mask');
    r.maskThreshold = r.classifier.metadata.threshold;
    // Each model's own framing: the inpainter's crop, and the classifier's where it frames faces otherwise.
    r.crop = framedCrop(r.spec.crop, r.inpainter.metadata.framing);
    r.classifierCrop = framedCrop(r.spec.crop, r.classifier.metadata.framing);
    // The paste gates and blend the model file carries (inpaint.model_blend), this version's defaults where it
    // names none.
    r.blend = {...r.spec.blend, ...((r.inpainter.metadata.runtime || {}).blend || {})};
    const ssd = (o) => ssdAnchors(o.input_size, o.strides, o.interpolated_scale_aspect_ratio);
    r.anchors = ssd(r.spec.blazeface.full);
    r.shortAnchors = ssd(r.spec.blazeface.short);
    r.loadMs = now() - t0;
    return r;
  }

  describe() {
    return {accelerator: this.inpainter.accelerator, fully_accelerated: this.inpainter.fullyAccelerated, threads: this.threads, cross_origin_isolated: self.crossOriginIsolated,
            model: this.inpainter.metadata, classifier_threshold: this.maskThreshold, fallbacks: this.fallbacks,
            spec_version: this.spec.version, load_ms: this.loadMs};
  }

  async centerfaceFaces(img, threshold) {
    const [, ch, cw] = this.centerface.input;
    const [canvas, scale] = letterboxTopLeft(img, ch, cw);
    const heads = await this.centerface.run(canvas);
    return decodeCenterFace(heads, this.centerface.outputs.map((o) => o.shape), this.spec.centerface, threshold).map((f) => ({
      box: f.box.map((v) => v / scale), score: f.score, stage: 'centerface', keypointModel: 'centerface',
      keypoints: [f.points[0], f.points[1], f.points[2],
                  [(f.points[3][0] + f.points[4][0]) / 2, (f.points[3][1] + f.points[4][1]) / 2], f.points[3], f.points[4]]
                 .map(([x, y]) => [x / scale, y / scale]),
    }));
  }

  // detect.merge: the best-scoring of overlapping faces; a face whose centre lies in a kept one gives way; faces of
  // the `last` stages only where no other stage's face overlaps them; `fuse`: detect.fused_face.
  merge(faces, {last = [], fuse = false} = {}) {
    const iou = this.spec.centerface.merge_iou, kept = [];
    const order = faces.slice().sort((a, b) => (last.includes(a.stage) - last.includes(b.stage)) || b.score - a.score);
    for (const f of order) {
      const cx = (f.box[0] + f.box[2]) / 2, cy = (f.box[1] + f.box[3]) / 2;
      if (kept.every((k) => boxIou(f.box, k.box) <= iou
                            && !(k.box[0] <= cx && cx <= k.box[2] && k.box[1] <= cy && cy <= k.box[3]))) kept.push(f);
    }
    return fuse ? kept.map((k) => this.fused(k, faces, iou)) : kept;
  }

  // detect.fused_face: the score-weighted mean box and keypoints of the same model family's overlapping faces.
  fused(kept, faces, iou) {
    const family = this.spec.blazeface.model_family;
    const group = faces.filter((f) => family[f.stage] === family[kept.stage] && family[f.stage] !== undefined
                                      && boxIou(f.box, kept.box) > iou);
    if (group.length < 2) return kept;
    const total = group.reduce((a, f) => a + f.score, 0);
    const mean = (get) => get(group[0]).map((_, j) => Array.isArray(get(group[0])[j])
      ? [0, 1].map((k) => group.reduce((a, f) => a + get(f)[j][k] * f.score, 0) / total)
      : group.reduce((a, f) => a + get(f)[j] * f.score, 0) / total);
    return {...kept, box: mean((f) => f.box), keypoints: mean((f) => f.keypoints), keypointModel: 'full_range'};
  }

  async blazefaceFaces(cut, minScore) {   // the full-range model on a cut of its input size
    return this.ssdFaces(this.blazeface, this.anchors, cut, minScore);
  }

  // detect.BlazeFace.raw + weighted_nms on a square of the model's input size, in that square's pixels.
  async ssdFaces(net, anchors, square, minScore) {
    const size = net.input[1], limit = this.spec.refine.raw_score_limit;
    const x = new Float32Array(square.data.length);
    for (let i = 0; i < x.length; i++) x[i] = square.data[i] / 127.5 - 1;
    const outs = await net.run(x);
    const [reg, logits] = net.outputs[0].shape[2] > net.outputs[1].shape[2] ? outs : [outs[1], outs[0]];
    const found = [];
    for (let i = 0; i < anchors.length; i++) {
      const score = 1 / (1 + Math.exp(-Math.min(limit, Math.max(-limit, logits[i]))));
      if (!(score >= minScore)) continue;
      const [ax, ay] = anchors[i], p = (k) => reg[16 * i + k] / size;
      const cx = p(0) + ax, cy = p(1) + ay, hw = p(2) / 2, hh = p(3) / 2;
      const box = [(cx - hw) * size, (cy - hh) * size, (cx + hw) * size, (cy + hh) * size];
      if (!(box[2] > box[0] && box[3] > box[1])) continue;
      const keypoints = [];
      for (let k = 0; k < 6; k++) keypoints.push([(p(4 + 2 * k) + ax) * size, (p(5 + 2 * k) + ay) * size]);
      found.push({box, keypoints, score});
    }
    return weightedNms(found, this.spec.refine.nms_iou);
  }

  // detect.FaceDetector.refined: BlazeFace looks again at a cut around the face and at its mirror; the face takes
  // the score-weighted mean of their keypoints (box and score stay).
  async refined(img, face) {
    const spec = this.spec.refine, side = spec.input_size;
    const [x0, y0, x1, y1] = face.box, s = side / (spec.scale * Math.max(x1 - x0, y1 - y0, 1e-3));
    const toCut = [s, 0, side / 2 - s * (x0 + x1) / 2, 0, s, side / 2 - s * (y0 + y1) / 2];
    const cut = ops.warpAffine(img, toCut, side, side, spec.border);
    const views = (await this.blazefaceFaces(cut, spec.min_score))
      .concat(unflip(await this.blazefaceFaces(ops.flipHorizontal(cut), spec.min_score), side, 'flip'));
    const back = ([x, y]) => [(x - toCut[2]) / s, (y - toCut[5]) / s];
    const mapped = views.map((f) => ({score: f.score, box: [...back(f.box.slice(0, 2)), ...back(f.box.slice(2))], keypoints: f.keypoints.map(back)}))
      .filter((f) => boxIou(f.box, face.box) > spec.nms_iou);
    if (!mapped.length) return face;
    const total = mapped.reduce((a, f) => a + f.score, 0);
    const keypoints = face.keypoints.map((_, j) => [0, 1].map((k) => mapped.reduce((a, f) => a + f.keypoints[j][k] * f.score, 0) / total));
    return {...face, keypoints, keypointModel: 'full_range'};
  }

  // detect.FaceDetector.detect; `worthRefining(face)` (async, optional) is asked before each face's closer look.
  async detect(img, worthRefining = null) {
    const spec = this.spec.centerface;
    let faces = await this.centerfaceFaces(img, spec.threshold);
    const longer = Math.max(img.width, img.height);
    if (longer >= spec.tile_min_side && !faces.some((f) => f.box[2] - f.box[0] >= spec.tile_skip_fraction * longer))
      faces = this.merge(faces.concat(await this.tiles(img, 2, 'centerface_tiles', (t) => this.centerfaceFaces(t, spec.threshold))));
    const refined = [];
    if (faces.length) for (const f of faces) refined.push(!worthRefining || await worthRefining(f) ? await this.refined(img, f) : f);
    else refined.push(...await this.blazefaceCascade(img, worthRefining));
    return refined.sort((a, b) => b.score - a.score);
  }

  // detect.BlazeFace.detect: the model on the whole photo, letterboxed into its input (centred), in photo pixels.
  async whole(net, anchors, img, minScore, stage) {
    const [square, scale, px, py] = letterboxCentred(img, net.input[1]);
    const back = ([x, y]) => [(x - px) / scale, (y - py) / scale];
    return (await this.ssdFaces(net, anchors, square, minScore)).map((f) => ({
      score: f.score, stage, keypointModel: 'full_range', box: [...back(f.box.slice(0, 2)), ...back(f.box.slice(2))],
      keypoints: f.keypoints.map(back)}));
  }

  // detect.FaceDetector._tiles: grid x grid tiles overlapping by tile_overlap of a tile (a face cut by one tile
  // border is whole in a neighbour), each seen by `find` (which letterboxes it into its model), merged.
  async tiles(img, grid, stage, find) {
    const t = 1 / (grid - (grid - 1) * this.spec.centerface.tile_overlap);
    const th = Math.max(1, pyRound(img.height * t)), tw = Math.max(1, pyRound(img.width * t));
    let found = [];
    for (let gy = 0; gy < grid; gy++)
      for (let gx = 0; gx < grid; gx++) {
        const y0 = pyRound(gy * (img.height - th) / (grid - 1)), x0 = pyRound(gx * (img.width - tw) / (grid - 1));
        found = found.concat(shifted(await find(cropImage(img, x0, y0, tw, th)), x0, y0, stage));
      }
    return this.merge(found);
  }

  // detect.FaceDetector.run_stage for the BlazeFace stages.
  async runStage(stage, img) {
    const b = this.spec.blazeface, min = b.min_score, full = [this.blazeface, this.anchors];
    const short = [this.shortRange, this.shortAnchors], longer = Math.max(img.width, img.height);
    if (stage === 'full') return this.whole(...full, img, min, 'full');
    if (stage === 'flip') return unflip(await this.whole(...full, ops.flipHorizontal(img), min, 'flip'), img.width, 'flip');
    if (stage === 'tiles') return longer < 2 * b.full.input_size ? [] : this.tiles(img, 2, 'tiles', (t) => this.whole(...full, t, min, 'tiles'));
    if (stage === 'short') return this.whole(...short, img, min, 'short');
    if (stage === 'short_tiles') return this.tiles(img, 3, 'short_tiles', (t) => this.whole(...short, t, min, 'short_tiles'));
    if (stage === 'padded') {
      // a copy no bigger than padded_max_side: the model sees it at its input size anyway
      const scale = Math.min(1, b.padded_max_side / ((1 + 2 * b.pad_fraction) * longer));
      const small = scale === 1 ? img : ops.resizeArea(img, Math.max(1, pyRound(img.width * scale)),
                                                        Math.max(1, pyRound(img.height * scale)));
      const p = pyRound(b.pad_fraction * Math.max(small.width, small.height));
      const padded = ops.image(small.width + 2 * p, small.height + 2 * p, 3, Uint8Array);
      for (let y = 0; y < small.height; y++)
        padded.data.set(small.data.subarray(y * small.width * 3, (y + 1) * small.width * 3), ((y + p) * padded.width + p) * 3);
      const faces = shifted(await this.whole(...full, padded, min, 'padded'), -p, -p);
      return scale === 1 ? faces : faces.map((f) => ({...f, box: f.box.map((v) => v / scale),
                                                       keypoints: f.keypoints.map(([x, y]) => [x / scale, y / scale])}));
    }
    return [];
  }

  // detect.FaceDetector._blazeface_cascade: the union of views with their confirmation rules, then the fallbacks,
  // then the closer look where it magnifies the face enough.
  async blazefaceCascade(img, worthRefining = null) {
    const b = this.spec.blazeface, thresholds = b.union_thresholds, longer = Math.max(img.width, img.height);
    const found = new Map();
    for (const stage of b.stages) {
      if (!(stage in thresholds)) continue;
      if (b.tiled_stages.includes(stage)) {   // tiles look for small faces: not once a big one is found
        const soFar = [...found.values()].flat().filter((f) => f.score >= thresholds[f.stage][0]);
        if (soFar.length && Math.max(...soFar.map((f) => f.box[2] - f.box[0])) >= this.spec.centerface.tile_skip_fraction * longer) continue;
      }
      found.set(stage, await this.runStage(stage, img));
    }
    let faces = this.merge(confirmed(found, thresholds, b.confirm_iou, b.cross_thresholds, b.model_family),
                           {last: b.confirming_stages, fuse: true});
    for (const stage of b.stages) {
      if (faces.length || (stage in thresholds && !b.fallback_reuse.includes(stage))) continue;
      const dets = found.has(stage) ? found.get(stage) : await this.runStage(stage, img);
      faces = this.merge(dets.filter((f) => f.score >= b.fallback_threshold));
    }
    const side = b.full.input_size, out = [];
    for (const f of faces) {   // detect.needs_refining: only where the cut shows the face min_zoom times bigger
      const firstPass = Math.max(f.box[2] - f.box[0], f.box[3] - f.box[1]) * side / longer;
      out.push(side / this.spec.refine.scale >= b.refine_min_zoom * firstPass && (!worthRefining || await worthRefining(f))
               ? await this.refined(img, f) : f);
    }
    return out;
  }

  eyes(face) {
    return correctEyes(face.keypoints[0], face.keypoints[1], this.spec.eye_corrections[face.keypointModel]);
  }

  // inpaint.Inpainter.remove_detailed for one photo: {image, faces, timings (ms)}.
  async remove(img) {
    const timings = {detection: 0, mask_decision: 0, model: 0, blending: 0};
    const blend = this.blend, size = this.size, reports = [];
    const threshold = blend.min_mask_probability ?? this.maskThreshold;
    // inpaint.Inpainter._screen: a face the classifier scores below refine_min_probability on its first eyes is
    // decided there, without the closer look; its crop and probability are kept. A face it refines keeps that
    // crop's probabilities (and its mirror's, with mirror_views) by box: the closer look keeps the box.
    const screened = new Map(), firstViews = new Map();
    const worthRefining = 0 < blend.refine_min_probability && blend.refine_min_probability <= threshold ? async (face) => {
      const t0 = now();
      let matrix;
      try { matrix = similarityFromEyes(...this.eyes(face), size, this.crop); } catch { return true; }
      const crop = ops.warpAffine(img, matrix, size, size, this.crop.border);
      const seen = this.decisionCrop(img, this.eyes(face), crop);
      const p = await this.probability(seen);
      const refine = p >= blend.refine_min_probability;
      if (refine && blend.mirror_views) firstViews.set(boxKey(face.box), [p, await this.probability(seen, true)]);
      else if (!refine) screened.set(face, {matrix, crop, p});
      timings.mask_decision += now() - t0;
      return refine;
    } : null;
    let t = now();
    const faces = await this.detect(img, worthRefining);
    timings.detection = now() - t - timings.mask_decision;
    let out = null;
    for (const face of faces) {
      const report = {box: face.box.map((v) => Math.round(v * 10) / 10), score: face.score, stage: face.stage, pasted: false, reason: null,
                      mask_probability: null};
      reports.push(report);
      const [left, right] = this.eyes(face);
      report.eye_distance = Math.hypot(right[0] - left[0], right[1] - left[1]);
      if (report.eye_distance < blend.min_eye_distance_px) { report.reason = 'face too small'; continue; }
      const side = Math.max(face.box[2] - face.box[0], face.box[3] - face.box[1], 1);
      if (report.eye_distance / side < (blend.min_eye_spacing ?? 0)) { report.reason = 'eyes do not fit the face box'; continue; }
      let matrix, crop, p;
      t = now();
      if (screened.has(face)) ({matrix, crop, p} = screened.get(face));
      else {
        try { matrix = similarityFromEyes(left, right, size, this.crop); } catch { report.reason = 'eyes coincide'; continue; }
        crop = ops.warpAffine(img, matrix, size, size, this.crop.border);
        const seen = this.decisionCrop(img, [left, right], crop);
        // inpaint.Inpainter._probability
        p = blend.mirror_views ? combined([await this.probability(seen), await this.probability(seen, true),
                                           ...(firstViews.get(boxKey(face.box)) ?? [])])
                               : await this.probability(seen);
      }
      report.mask_probability = p;
      timings.mask_decision += now() - t;
      if (!(p >= threshold)) { report.reason = `no mask (mask probability ${p.toFixed(2)} < ${threshold.toFixed(2)})`; continue; }
      t = now();
      const [pred] = await this.inpainter.run(ops.toFloat(crop, 1 / 255).data);
      timings.model += now() - t;
      t = now();
      const gated = this.alpha(pred, report, crop);
      if (gated) {
        if (!out) out = {...img, data: Uint8Array.from(img.data)};
        this.paste(out, this.harmonized(pred, crop, gated.binary), gated.alpha, matrix);
      }
      timings.blending += now() - t;
    }
    return {image: out || img, faces: reports, timings};
  }

  // inpaint.Inpainter._decision_crop: the model's crop, or the face cut again in the classifier's framing at the
  // crop size it was calibrated on.
  decisionCrop(img, eyes, crop) {
    const a = this.crop, b = this.classifierCrop, side = this.classifier.metadata.crop_size ?? 128;
    if (side === this.size && a.canonical_left_eye.join() === b.canonical_left_eye.join()
        && a.canonical_right_eye.join() === b.canonical_right_eye.join()) return crop;
    return ops.warpAffine(img, similarityFromEyes(...eyes, side, b), side, side, b.border);
  }

  // mask_decision.MaskClassifier.probability: the aligned crop, area-downscaled to the classifier's input (or that
  // input's mirror image).
  async probability(crop, mirrored = false) {
    let small = ops.resizeArea(crop, this.classifier.input[2], this.classifier.input[1]);   // uint8, as cv2
    if (mirrored) small = ops.flipHorizontal(small);
    const [prob] = await this.classifier.run(ops.toFloat(small, 1 / 255).data);
    return Number.isFinite(prob[0]) ? Math.min(1, Math.max(0, prob[0])) : NaN;
  }

  // inpaint.Inpainter._alpha: the gates on the predicted mask, then the feathered paste weight.
  alpha(pred, report, crop) {
    const s = this.size, c = this.channels.length, cfg = this.blend, m = this.maskChannel;
    const binary = new Uint8Array(s * s);
    let count = 0, probSum = 0, ySum = 0, change = 0;
    for (let i = 0; i < s * s; i++) {
      if (!Number.isFinite(pred[i * c]) || !Number.isFinite(pred[i * c + m])) { report.reason = 'model output is not finite'; return null; }
      if (pred[i * c + m] > cfg.mask_threshold) {
        binary[i] = 1; count++; probSum += pred[i * c + m]; ySum += Math.floor(i / s);
        let d = 0;
        for (let k = 0; k < 3; k++) d += Math.abs(pred[i * c + k] - crop.data[i * 3 + k] / 255);
        change += d / 3;
      }
    }
    report.mask_area = count / (s * s);
    if (!count) { report.mask_confidence = 0; report.reason = 'no mask predicted'; return null; }
    report.mask_confidence = probSum / count;
    report.mask_centroid_y = ySum / count / s;
    report.change = change / count;
    if (report.mask_confidence < cfg.min_confidence) report.reason = `weak mask (confidence ${report.mask_confidence.toFixed(2)})`;
    else if (!(cfg.min_area * areaScale(this.crop) <= report.mask_area && report.mask_area <= cfg.max_area * areaScale(this.crop))) report.reason = 'implausible mask area';
    else if (report.mask_centroid_y < fromDefaultY(this.crop, cfg.min_centroid_y)) report.reason = 'implausible mask position';
    else if (report.change < cfg.min_change) report.reason = 'no mask visible';
    if (report.reason) return null;
    report.pasted = true;
    // inpaint.feathered_alpha
    const grown = ops.dilate(binary, s, s, Math.max(1, Math.round(cfg.dilate * s)));
    const alpha = ops.gaussianBlur({width: s, height: s, channels: 1, data: Float32Array.from(grown)}, Math.max(0.5, cfg.feather * s));
    for (let y = 0; y < s; y++)
      for (let x = 0; x < s; x++) {
        const i = y * s + x;
        if (alpha.data[i] < 1 / 255 || x === 0 || y === 0 || x === s - 1 || y === s - 1) alpha.data[i] = 0;
        alpha.data[i] = Math.min(1, Math.max(0, alpha.data[i]));
      }
    return {alpha, binary};
  }

  // inpaint.harmonized: the model's RGB with its tone matched to the skin around it, the rim band filled and the
  // mask's hem removed, uint8.
  harmonized(pred, crop, binary) {
    const s = this.size, c = this.channels.length, cfg = this.blend;
    let rgb = ops.image(s, s, 3);
    for (let i = 0; i < s * s; i++) for (let k = 0; k < 3; k++) rgb.data[i * 3 + k] = pred[i * c + k];
    if (cfg.tone_spread) rgb = matchTone(rgb, ops.toFloat(crop, 1 / 255), binary, cfg.tone_spread * s);
    if (cfg.chroma_limit) rgb = ops.limitChroma(rgb, ops.toFloat(crop, 1 / 255), binary, cfg.chroma_limit, Math.max(1, pyRound(0.03 * s)));
    if (cfg.rim_fill) rgb = fillRim(rgb, binary, pyRound(cfg.rim_fill * s));
    if (cfg.rim_clean) rgb = ops.cleanRim(rgb, binary, pyRound(cfg.rim_clean * s));
    const out = ops.image(s, s, 3, Uint8Array);
    for (let i = 0; i < rgb.data.length; i++) out.data[i] = Math.min(255, Math.max(0, Math.floor(rgb.data[i] * 255 + 0.5)));
    return out;
  }

  // inpaint._paste_roi: warp the crop and its weight back over the face's rectangle only and blend.
  paste(out, rgb, alpha, matrix) {
    const s = this.size, [bx, by, bw, bh] = ops.boundingRect(alpha.data.map((v) => (v > 0 ? 1 : 0)), s, s);
    if (!bw) return;
    const inv = ops.invertAffine(matrix);
    const corners = [[bx - 1, by - 1], [bx + bw, by - 1], [bx - 1, by + bh], [bx + bw, by + bh]]
      .map(([x, y]) => [inv[0] * x + inv[1] * y + inv[2], inv[3] * x + inv[4] * y + inv[5]]);
    const x0 = Math.max(0, Math.floor(Math.min(...corners.map((p) => p[0]))) - 1);
    const y0 = Math.max(0, Math.floor(Math.min(...corners.map((p) => p[1]))) - 1);
    const x1 = Math.min(out.width, Math.ceil(Math.max(...corners.map((p) => p[0]))) + 2);
    const y1 = Math.min(out.height, Math.ceil(Math.max(...corners.map((p) => p[1]))) + 2);
    if (x1 <= x0 || y1 <= y0) return;
    const roi = [inv[0], inv[1], inv[2] - x0, inv[3], inv[4], inv[5] - y0];
    const warped = ops.warpAffine(rgb, roi, x1 - x0, y1 - y0, 'constant');
    const weight = ops.warpAffine(alpha, roi, x1 - x0, y1 - y0, 'constant');
    ops.blendInto(out, x0, y0, warped, weight);
  }
}

// Python's round(): half to even.
function pyRound(v) {
  const r = Math.round(v);
  return (r - v === 0.5 && r % 2 === 1) ? r - 1 : r;
}

// harmonize._local_mean: the Gaussian mean of `img` over the pixels of `weight`, and the weight's density.
function localMean(img, weight, sigma) {
  const {width: w, height: h, channels: c} = img;
  const density = ops.gaussianBlur({width: w, height: h, channels: 1, data: Float32Array.from(weight)}, sigma);
  const weighted = ops.image(w, h, c);
  for (let i = 0; i < w * h; i++) for (let k = 0; k < c; k++) weighted.data[i * c + k] = img.data[i * c + k] * weight[i];
  const num = ops.gaussianBlur(weighted, sigma);
  for (let i = 0; i < w * h; i++) for (let k = 0; k < c; k++) num.data[i * c + k] /= Math.max(density.data[i], 1e-6);
  return [num, density.data];
}

// harmonize.match_tone, at 64 px as there.
function matchTone(restored, photo, mask, spread, tolerance = 0.12, ring = 3, workSize = 64) {
  const size = restored.width, scale = Math.min(1, workSize / size), n = Math.max(1, pyRound(size * scale));
  const rSmall = ops.resizeArea(restored, n, n), pSmall = ops.resizeArea(photo, n, n);
  const mSmall = ops.resizeArea({width: size, height: size, channels: 1, data: Float32Array.from(mask)}, n, n);
  const m = Uint8Array.from(mSmall.data, (v) => (v > 0.5 ? 1 : 0));
  const ringPx = Math.max(1, pyRound(ring * scale));
  const d2 = ops.dilate(m, n, n, 2 * ringPx), d1 = ops.dilate(m, n, n, ringPx), e1 = ops.erode(m, n, n, ringPx);
  const outer = Float32Array.from(d2, (v, i) => v - d1[i]), inner = Float32Array.from(m, (v, i) => v - e1[i]);
  if (!outer.some((v) => v) || !inner.some((v) => v)) return restored;
  const [outMean, outW] = localMean(pSmall, outer, 2 * ringPx), [inMean, inW] = localMean(rSmall, inner, 2 * ringPx);
  const db = ops.dilate(m, n, n, 1), eb = ops.erode(m, n, n, 1);
  const border = Uint8Array.from(m, (_, i) => (db[i] - eb[i]) && outW[i] > 1e-3 && inW[i] > 1e-3 ? 1 : 0);
  if (!border.some((v) => v)) return restored;
  const offset = ops.image(n, n, 3), weight = new Float32Array(n * n);
  for (let i = 0; i < n * n; i++) {
    if (!border[i]) continue;
    let sq = 0;
    for (let k = 0; k < 3; k++) { const o = outMean.data[i * 3 + k] - inMean.data[i * 3 + k]; offset.data[i * 3 + k] = o; sq += o * o; }
    weight[i] = Math.exp(-(((Math.sqrt(sq) / Math.sqrt(3)) / tolerance) ** 2));
  }
  const [field, density] = localMean(offset, weight, spread * scale);
  const full = ops.gaussianBlur({width: n, height: n, channels: 1, data: Float32Array.from(border)}, spread * scale);
  let fullMean = 0, count = 0;
  for (let i = 0; i < n * n; i++) if (border[i]) { fullMean += full.data[i]; count++; }
  fullMean = Math.max(fullMean / count, 1e-6);
  for (let i = 0; i < n * n; i++) {
    const fade = Math.min(1, Math.max(0, density[i] / fullMean));
    for (let k = 0; k < 3; k++) field.data[i * 3 + k] *= fade;
  }
  const big = ops.resizeLinear(field, size, size), out = ops.image(size, size, 3);
  for (let i = 0; i < size * size; i++)
    for (let k = 0; k < 3; k++) out.data[i * 3 + k] = Math.min(1, Math.max(0, restored.data[i * 3 + k] + big.data[i * 3 + k] * mask[i]));
  return out;
}

// harmonize.fill_rim: the band of `width` px outside the mask filled from both sides where they agree.
function fillRim(rgb, mask, width, tolerance = 0.12) {
  if (width <= 0 || !mask.some((v) => v)) return rgb;
  const s = rgb.width, grown = ops.dilate(mask, s, s, width);
  const band = Uint8Array.from(grown, (g, i) => (g && !mask[i] ? 1 : 0));
  const [x, y, w, h] = ops.boundingRect(band, s, s);
  if (!w) return rgb;
  const reach = 3 * width;
  const y0 = Math.max(0, y - reach), y1 = Math.min(s, y + h + reach), x0 = Math.max(0, x - reach), x1 = Math.min(s, x + w + reach);
  const rw = x1 - x0, rh = y1 - y0, roi = ops.image(rw, rh, 3);
  const pick = (a) => { const o = new Float32Array(rw * rh); for (let j = 0; j < rh; j++) for (let i = 0; i < rw; i++) o[j * rw + i] = a[(y0 + j) * s + x0 + i]; return o; };
  for (let j = 0; j < rh; j++) roi.data.set(rgb.data.subarray(((y0 + j) * s + x0) * 3, ((y0 + j) * s + x1) * 3), j * rw * 3);
  const roiBand = pick(band), roiMask = pick(mask), roiGrown = pick(grown);
  const [fill] = localMean(roi, roiBand.map((v) => 1 - v), width);
  const [inside] = localMean(roi, roiMask, 2 * width);
  const [outside] = localMean(roi, roiGrown.map((v) => 1 - v), 2 * width);
  const out = {...rgb, data: Float32Array.from(rgb.data)};
  for (let j = 0; j < rh; j++)
    for (let i = 0; i < rw; i++) {
      const r = j * rw + i;
      if (!roiBand[r]) continue;
      let sq = 0;
      for (let k = 0; k < 3; k++) sq += (inside.data[r * 3 + k] - outside.data[r * 3 + k]) ** 2;
      const wgt = Math.exp(-(((Math.sqrt(sq) / Math.sqrt(3)) / tolerance) ** 2));
      for (let k = 0; k < 3; k++)
        out.data[((y0 + j) * s + x0 + i) * 3 + k] = wgt * fill.data[r * 3 + k] + (1 - wgt) * roi.data[r * 3 + k];
    }
  return out;
}
