// Run one operation of web/imageops.js on a raw image, for tests/test_web.py to compare with OpenCV:
//   node web/tests/imageops_cli.mjs OP IN.json OUT.bin   (IN.json: {width, height, channels, dtype, data (base64), args})
import {readFileSync, writeFileSync} from 'node:fs';
import * as ops from '../imageops.js';

const [op, input, output] = process.argv.slice(2);
const spec = JSON.parse(readFileSync(input, 'utf8'));
const bytes = Buffer.from(spec.data, 'base64');
const Type = spec.dtype === 'uint8' ? Uint8Array : Float32Array;
const data = new Type(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
const img = {width: spec.width, height: spec.height, channels: spec.channels, data};
const a = spec.args || {};
let out;
if (op === 'resize_area') out = ops.resizeArea(img, a.width, a.height).data;
else if (op === 'resize_linear') out = ops.resizeLinear(img, a.width, a.height).data;
else if (op === 'warp_affine') out = ops.warpAffine(img, a.matrix, a.width, a.height, a.border).data;
else if (op === 'gaussian_blur') out = ops.gaussianBlur(img, a.sigma).data;
else if (op === 'dilate') out = ops.dilate(img.data, img.width, img.height, a.radius);
else if (op === 'erode') out = ops.erode(img.data, img.width, img.height, a.radius);
else if (op === 'median_blur') out = ops.medianBlur(img, a.k).data;
else if (op === 'clean_rim') out = ops.cleanRim(img, Uint8Array.from(a.mask), a.width).data;
else if (op === 'limit_chroma') out = ops.limitChroma(img, {data: Float32Array.from(a.photo)}, Uint8Array.from(a.mask), a.radius, a.ring).data;
else if (op === 'connected_components') out = ops.connectedComponents(img.data, img.width, img.height)[0];
else throw new Error(`unknown op ${op}`);
writeFileSync(output, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
