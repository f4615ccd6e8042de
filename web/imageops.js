// Image operations of the mask2face runtime, as OpenCV defines them (the Python runtime calls cv2): resize
// (INTER_AREA down, INTER_LINEAR up), warpAffine (bilinear, three border modes), GaussianBlur, dilate / erode with
// an elliptic structuring element, boundingRect and blendLinear. Plain loops over typed arrays: the crops are
// 128 px, so none of this needs a GPU.
//
// An image is {width, height, channels, data}: data is a Uint8Array (pixels 0-255) or a Float32Array, row-major,
// channels interleaved (RGB).

export function image(width, height, channels, Type = Float32Array) {
  return {width, height, channels, data: new Type(width * height * channels)};
}

export function toFloat(img, scale = 1) {
  const out = image(img.width, img.height, img.channels);
  for (let i = 0; i < img.data.length; i++) out.data[i] = img.data[i] * scale;
  return out;
}

// Float values to uint8 as OpenCV's saturate_cast does (round half to even, then clamp).
export function toUint8(img) {
  const out = image(img.width, img.height, img.channels, Uint8Array);
  for (let i = 0; i < img.data.length; i++) out.data[i] = saturate(img.data[i]);
  return out;
}

export function saturate(v) {
  if (!(v > 0)) return 0;
  if (v >= 255) return 255;
  const r = Math.round(v);
  return (r - v === 0.5 && r % 2 === 1) ? r - 1 : r;   // round half to even, like lrint
}

function store(out, i, v) {
  out.data[i] = out.data instanceof Float32Array ? v : saturate(v);
}

// cv2.resize with INTER_AREA, for shrinking: each output pixel is the mean of the input area it covers, with
// OpenCV's weight table and float32 sums (so that uint8 results round as OpenCV's do).
export function resizeArea(img, width, height) {
  const fx = img.width / width, fy = img.height / height;
  if (Number.isInteger(fx) && Number.isInteger(fy) && img.data instanceof Uint8Array) return resizeAreaFast(img, fx, fy);
  const wx = areaWeights(img.width, width), wy = areaWeights(img.height, height);
  const c = img.channels, out = image(width, height, c, img.data.constructor), f = Math.fround;
  const row = new Float32Array(width * c), acc = new Float32Array(width * c);
  for (let y = 0; y < height; y++) {
    acc.fill(0);
    for (const [sy, wyv] of wy[y]) {
      row.fill(0);
      const base = sy * img.width * c;
      for (let x = 0; x < width; x++)
        for (const [sx, wxv] of wx[x])
          for (let k = 0; k < c; k++) row[x * c + k] = f(row[x * c + k] + f(wxv * img.data[base + sx * c + k]));
      for (let i = 0; i < width * c; i++) acc[i] = f(acc[i] + f(wyv * row[i]));
    }
    for (let i = 0; i < width * c; i++) store(out, y * width * c + i, acc[i]);
  }
  return out;
}

// OpenCV's ResizeAreaFast for whole-number factors on uint8: the integer block sum, rounded half up.
function resizeAreaFast(img, fx, fy) {
  const width = img.width / fx, height = img.height / fy, c = img.channels, area = fx * fy;
  const out = image(width, height, c, Uint8Array);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let k = 0; k < c; k++) {
        let sum = 0;
        for (let j = 0; j < fy; j++) for (let i = 0; i < fx; i++) sum += img.data[((y * fy + j) * img.width + x * fx + i) * c + k];
        out.data[(y * width + x) * c + k] = Math.floor((sum + Math.floor(area / 2)) / area);
      }
  return out;
}

// OpenCV's computeResizeAreaTab: (source index, float32 weight) pairs per output index.
function areaWeights(src, dst) {
  const scale = src / dst, weights = [], f = Math.fround;
  for (let d = 0; d < dst; d++) {
    const fs1 = d * scale, fs2 = fs1 + scale, cell = Math.min(scale, src - fs1), list = [];
    let s2 = Math.min(Math.floor(fs2), src - 1);
    const s1 = Math.min(Math.ceil(fs1), s2);
    if (s1 - fs1 > 1e-3) list.push([s1 - 1, f((s1 - fs1) / cell)]);
    for (let s = s1; s < s2; s++) list.push([s, f(1 / cell)]);
    if (fs2 - s2 > 1e-3) list.push([s2, f(Math.min(Math.min(fs2 - s2, 1), cell) / cell)]);
    weights.push(list);
  }
  return weights;
}

// cv2.resize with INTER_LINEAR: pixel centres aligned, edges clamped.
export function resizeLinear(img, width, height) {
  const c = img.channels, out = image(width, height, c, img.data.constructor);
  const ix = linearTaps(img.width, width), iy = linearTaps(img.height, height);
  for (let y = 0; y < height; y++) {
    const [y0, y1, fy] = iy[y];
    for (let x = 0; x < width; x++) {
      const [x0, x1, fx] = ix[x];
      for (let k = 0; k < c; k++) {
        const a = img.data[(y0 * img.width + x0) * c + k], b = img.data[(y0 * img.width + x1) * c + k];
        const d = img.data[(y1 * img.width + x0) * c + k], e = img.data[(y1 * img.width + x1) * c + k];
        const v = (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * d + fx * e);
        store(out, (y * width + x) * c + k, v);
      }
    }
  }
  return out;
}

function linearTaps(src, dst) {
  const scale = src / dst, taps = [];
  for (let d = 0; d < dst; d++) {
    let f = (d + 0.5) * scale - 0.5, i = Math.floor(f);
    f -= i;
    if (i < 0) { i = 0; f = 0; }
    if (i >= src - 1) { i = src - 1; f = 0; }
    taps.push([i, Math.min(i + 1, src - 1), f]);
  }
  return taps;
}

function borderIndex(i, n, mode) {
  if (i >= 0 && i < n) return i;
  if (mode === 'constant') return -1;
  if (mode === 'replicate') return i < 0 ? 0 : n - 1;
  if (n === 1) return 0;                        // reflect101: ... 2 1 | 0 1 2 ... n-1 | n-2 ...
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

// Invert a 2x3 affine matrix [a, b, c, d, e, f] (x' = a x + b y + c, y' = d x + e y + f).
export function invertAffine(m) {
  const [a, b, c, d, e, f] = m, det = a * e - b * d;
  if (Math.abs(det) < 1e-12) throw new Error('affine matrix is singular');
  const ia = e / det, ib = -b / det, id = -d / det, ie = a / det;
  return [ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)];
}

// cv2.warpAffine(src, m, (width, height), INTER_LINEAR, borderMode): dst(p) = src(m^-1 p). Like OpenCV, source
// coordinates are rounded to 1/32 pixel before the bilinear weights.
export function warpAffine(src, m, width, height, border = 'constant') {
  const [a, b, c, d, e, f] = invertAffine(m), ch = src.channels;
  const out = image(width, height, ch, src.data.constructor), px = new Float64Array(ch);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const X = Math.round((a * x + b * y + c) * 32), Y = Math.round((d * x + e * y + f) * 32);
      const x0 = Math.floor(X / 32), y0 = Math.floor(Y / 32), fx = (X - 32 * x0) / 32, fy = (Y - 32 * y0) / 32;
      px.fill(0);
      const taps = [[x0, y0, (1 - fx) * (1 - fy)], [x0 + 1, y0, fx * (1 - fy)], [x0, y0 + 1, (1 - fx) * fy],
                    [x0 + 1, y0 + 1, fx * fy]];
      for (const [tx, ty, w] of taps) {
        if (w === 0) continue;
        const sx = borderIndex(tx, src.width, border), sy = borderIndex(ty, src.height, border);
        if (sx < 0 || sy < 0) continue;           // constant border: 0
        const base = (sy * src.width + sx) * ch;
        for (let k = 0; k < ch; k++) px[k] += w * src.data[base + k];
      }
      for (let k = 0; k < ch; k++) store(out, (y * width + x) * ch + k, px[k]);
    }
  }
  return out;
}

export function flipHorizontal(img) {
  const c = img.channels, out = image(img.width, img.height, c, img.data.constructor);
  for (let y = 0; y < img.height; y++)
    for (let x = 0; x < img.width; x++)
      for (let k = 0; k < c; k++)
        out.data[(y * img.width + x) * c + k] = img.data[(y * img.width + img.width - 1 - x) * c + k];
  return out;
}

// cv2.getGaussianKernel for cv2.GaussianBlur(float image, (0, 0), sigma): size round(8 sigma + 1) | 1.
export function gaussianKernel(sigma) {
  const size = (Math.round(sigma * 8 + 1)) | 1, half = (size - 1) / 2, k = new Float64Array(size);
  let sum = 0;
  for (let i = 0; i < size; i++) { k[i] = Math.exp(-((i - half) ** 2) / (2 * sigma * sigma)); sum += k[i]; }
  for (let i = 0; i < size; i++) k[i] /= sum;
  return k;
}

// cv2.GaussianBlur(img, (0, 0), sigma) on a float image, border reflect101.
export function gaussianBlur(img, sigma) {
  const k = gaussianKernel(sigma), r = (k.length - 1) / 2, {width: w, height: h, channels: c} = img;
  const tmp = new Float64Array(w * h * c), out = image(w, h, c);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let ch = 0; ch < c; ch++) {
        let v = 0;
        for (let i = -r; i <= r; i++) v += k[i + r] * img.data[(y * w + borderIndex(x + i, w, 'reflect101')) * c + ch];
        tmp[(y * w + x) * c + ch] = v;
      }
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let ch = 0; ch < c; ch++) {
        let v = 0;
        for (let i = -r; i <= r; i++) v += k[i + r] * tmp[(borderIndex(y + i, h, 'reflect101') * w + x) * c + ch];
        out.data[(y * w + x) * c + ch] = v;
      }
  return out;
}

// cv2.getStructuringElement(MORPH_ELLIPSE, (2 radius + 1,) * 2): [dy, dx] offsets of the disc.
const discs = new Map();
export function disc(radius) {
  if (!discs.has(radius)) {
    const offsets = [], r = radius;
    for (let i = 0; i <= 2 * r; i++) {
      const dy = i - r;
      const dx = r === 0 ? 0 : Math.round(r * Math.sqrt((r * r - dy * dy) / (r * r)));
      for (let j = Math.max(r - dx, 0); j < Math.min(r + dx + 1, 2 * r + 1); j++) offsets.push([dy, j - r]);
    }
    discs.set(radius, offsets);
  }
  return discs.get(radius);
}

// cv2.dilate / cv2.erode of a 0/1 Uint8Array mask (w x h) with disc(radius); pixels outside never count.
export function dilate(mask, w, h, radius) { return morph(mask, w, h, radius, true); }
export function erode(mask, w, h, radius) { return morph(mask, w, h, radius, false); }

function morph(mask, w, h, radius, grow) {
  const offsets = disc(radius), out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let v = grow ? 0 : 1;
      for (const [dy, dx] of offsets) {
        const yy = y + dy, xx = x + dx;
        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
        const m = mask[yy * w + xx];
        if (grow && m) { v = 1; break; }
        if (!grow && !m) { v = 0; break; }
      }
      out[y * w + x] = v;
    }
  return out;
}

// cv2.medianBlur of a uint8 image (any channel count) over a k x k window, k odd; borders replicated, as OpenCV's.
export function medianBlur(img, k) {
  const {width: w, height: h, channels: c} = img, r = (k - 1) / 2, out = image(w, h, c, Uint8Array);
  const win = new Uint8Array(k * k), mid = (k * k - 1) / 2;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let ch = 0; ch < c; ch++) {
        let n = 0;
        for (let dy = -r; dy <= r; dy++) {
          const yy = Math.min(h - 1, Math.max(0, y + dy));
          for (let dx = -r; dx <= r; dx++) win[n++] = img.data[(yy * w + Math.min(w - 1, Math.max(0, x + dx))) * c + ch];
        }
        win.sort();
        out.data[(y * w + x) * c + ch] = win[mid];
      }
  return out;
}

// cv2.connectedComponentsWithStats(connectivity=8) of a 0/1 mask (w x h), labels in scan order: [labels (Int32Array,
// 0 = background), areas (areas[label], areas[0] the background's)].
export function connectedComponents(mask, w, h) {
  const labels = new Int32Array(w * h), areas = [0], stack = [];
  for (let i = 0; i < w * h; i++) {
    if (!mask[i]) { areas[0]++; continue; }
    if (labels[i]) continue;
    const label = areas.length;
    let area = 0;
    labels[i] = label;
    stack.push(i);
    while (stack.length) {
      const p = stack.pop(), px = p % w, py = (p - px) / w;
      area++;
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++) {
          const xx = px + dx, yy = py + dy, q = yy * w + xx;
          if (xx < 0 || yy < 0 || xx >= w || yy >= h || !mask[q] || labels[q]) continue;
          labels[q] = label;
          stack.push(q);
        }
    }
    areas.push(area);
  }
  return [labels, areas];
}

// harmonize.limit_chroma (used by mask2face.js): each masked pixel's colour (itself minus its grey) kept within
// `radius` of the mean colour of the photo in a `ring`-px band outside the mask's upper half, between the crop's
// quarter lines (the cheeks).
export function limitChroma(rgb, photo, mask, radius, ring) {
  const s = rgb.width;
  if (radius <= 0 || ring <= 0 || !mask.some((v) => v)) return rgb;
  const m = Uint8Array.from(mask, (v) => (v ? 1 : 0)), grown = dilate(m, s, s, ring);
  let first = -1, last = -1;
  for (let y = 0; y < s; y++) for (let x = 0; x < s; x++) if (m[y * s + x]) { if (first < 0) first = y; last = y; }
  const middle = Math.floor((first + last) / 2), q = Math.floor(s / 4), ref = [0, 0, 0];
  let count = 0;
  for (let y = 0; y < middle; y++) {
    for (let x = q; x < s - q; x++) {
      const i = y * s + x;
      if (!grown[i] || m[i]) continue;
      const g = (photo.data[i * 3] + photo.data[i * 3 + 1] + photo.data[i * 3 + 2]) / 3;
      for (let k = 0; k < 3; k++) ref[k] += photo.data[i * 3 + k] - g;
      count++;
    }
  }
  if (!count) return rgb;
  for (let k = 0; k < 3; k++) ref[k] = Math.fround(ref[k] / count);
  const out = image(s, s, 3);
  out.data.set(rgb.data);
  for (let i = 0; i < s * s; i++) {
    if (!m[i]) continue;
    const r = rgb.data.subarray(i * 3, i * 3 + 3), g = Math.fround((r[0] + r[1] + r[2]) / 3), d = [0, 0, 0];
    let len = 0;
    for (let k = 0; k < 3; k++) { d[k] = Math.fround(r[k] - g - ref[k]); len += d[k] * d[k]; }
    const scale = Math.min(1, radius / Math.max(Math.sqrt(len), 1e-6));
    for (let k = 0; k < 3; k++) out.data[i * 3 + k] = Math.min(1, Math.max(0, g + ref[k] + d[k] * scale));
  }
  return out;
}

// harmonize.clean_rim (used by mask2face.js): `rgb` a float image in [0, 1], `mask` 0/1 (s x s). The band from `width` px inside the border of the mask's large parts (a tenth of the largest
// or more) to `width` + 1 px outside it replaced by its (2 width + 1)-px median, the band's edges feathered.
export function cleanRim(rgb, mask, width) {
  if (width <= 0 || !mask.some((v) => v)) return rgb;
  const s = rgb.width;
  let m = Uint8Array.from(mask, (v) => (v ? 1 : 0));
  const [labels, areas] = connectedComponents(m, s, s);
  if (areas.length > 2) {
    const largest = Math.max(...areas.slice(1));
    m = Uint8Array.from(labels, (l) => (l && areas[l] >= 0.1 * largest ? 1 : 0));
  }
  const grown = dilate(m, s, s, width + 1), core = erode(m, s, s, width);
  const band = Uint8Array.from(grown, (g, i) => g - core[i]);
  const [x, y, w, h] = boundingRect(band, s, s);
  if (!w) return rgb;
  const reach = width + 4;
  const y0 = Math.max(0, y - reach), y1 = Math.min(s, y + h + reach), x0 = Math.max(0, x - reach), x1 = Math.min(s, x + w + reach);
  const rw = x1 - x0, rh = y1 - y0, roiBand = image(rw, rh, 1), roi = image(rw, rh, 3, Uint8Array);
  for (let j = 0; j < rh; j++)
    for (let i = 0; i < rw; i++) {
      const p = (y0 + j) * s + x0 + i;
      roiBand.data[j * rw + i] = band[p];
      for (let k = 0; k < 3; k++) roi.data[(j * rw + i) * 3 + k] = Math.min(255, Math.max(0, Math.floor(rgb.data[p * 3 + k] * 255 + 0.5)));
    }
  const weight = gaussianBlur(roiBand, 1.0), median = medianBlur(roi, 2 * width + 1);
  const out = {...rgb, data: Float32Array.from(rgb.data)};
  for (let j = 0; j < rh; j++)
    for (let i = 0; i < rw; i++) {
      let wgt = Math.min(1, 2 * weight.data[j * rw + i]);
      if (wgt < 1 / 255) continue;
      const p = (y0 + j) * s + x0 + i;
      for (let k = 0; k < 3; k++) {
        const v = rgb.data[p * 3 + k];
        out.data[p * 3 + k] = v + wgt * (median.data[(j * rw + i) * 3 + k] / 255 - v);
      }
    }
  return out;
}

// cv2.boundingRect of the non-zero pixels: [x, y, width, height] ([0, 0, 0, 0] when there are none).
export function boundingRect(values, w, h) {
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      if (values[y * w + x]) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  return x1 < 0 ? [0, 0, 0, 0] : [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}

// cv2.blendLinear(src, dst, alpha, 1 - alpha) into `dst` (uint8) in place, over the rectangle at (x0, y0).
export function blendInto(dst, x0, y0, src, alpha) {
  const c = dst.channels;
  for (let y = 0; y < src.height; y++)
    for (let x = 0; x < src.width; x++) {
      const a = alpha.data[y * src.width + x];
      if (!(a > 0)) continue;
      const b = 1 - a, di = ((y0 + y) * dst.width + x0 + x) * c, si = (y * src.width + x) * c;
      for (let k = 0; k < c; k++) dst.data[di + k] = saturate((a * src.data[si + k] + b * dst.data[di + k]) / (a + b + 1e-5));
    }
}
