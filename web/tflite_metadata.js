// The metadata entries of a .tflite file (Model.metadata in TFLite's flatbuffer schema), read without a
// flatbuffer library: the same fields edge_runtime/tflite_file.py reads. mask2face's own entry, "mask2face", holds
// UTF-8 JSON (docs/ARCHITECTURE.md): input size, output channels, the mask classifier's threshold.

const MODEL_BUFFERS = 4, MODEL_METADATA = 6;        // field indices of table Model
const METADATA_NAME = 0, METADATA_BUFFER = 1;        // table Metadata
const BUFFER_DATA = 0, BUFFER_OFFSET = 1, BUFFER_SIZE = 2;   // table Buffer

export function readMetadata(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (p) => view.getUint32(p, true);
  const check = (p, n) => { if (p < 0 || p + n > bytes.length) throw new Error('not a .tflite file (offset out of range)'); };
  const table = (p) => {
    check(p, 4);
    const vtable = p - view.getInt32(p, true);
    check(vtable, 4);
    const vsize = view.getUint16(vtable, true);
    return (i) => {
      const o = 4 + 2 * i;
      if (o >= vsize) return null;
      const off = view.getUint16(vtable + o, true);
      return off ? p + off : null;
    };
  };
  const indirect = (p) => p + u32(p);
  const vector = (p) => { const v = indirect(p); check(v, 4); return [v + 4, u32(v)]; };

  check(0, 8);
  if (String.fromCharCode(...bytes.subarray(4, 8)) !== 'TFL3') throw new Error('not a .tflite file (no TFL3 identifier)');
  const model = table(u32(0));
  const out = {};
  const metaPos = model(MODEL_METADATA), buffersPos = model(MODEL_BUFFERS);
  if (metaPos === null || buffersPos === null) return out;
  const [buffers, nBuffers] = vector(buffersPos);
  const [entries, n] = vector(metaPos);
  for (let i = 0; i < n; i++) {
    const entry = table(indirect(entries + 4 * i));
    const namePos = entry(METADATA_NAME), bufPos = entry(METADATA_BUFFER);
    if (namePos === null) continue;
    const [start, length] = vector(namePos);
    const name = new TextDecoder().decode(bytes.subarray(start, start + length));
    const index = bufPos === null ? 0 : u32(bufPos);
    if (index >= nBuffers) throw new Error(`metadata '${name}' points to buffer ${index} of ${nBuffers}`);
    const buffer = table(indirect(buffers + 4 * index));
    let data;
    const offsetPos = buffer(BUFFER_OFFSET);
    if (offsetPos !== null && Number(view.getBigUint64(offsetPos, true)) > 1) {   // large files keep data after the flatbuffer
      const offset = Number(view.getBigUint64(offsetPos, true)), size = Number(view.getBigUint64(buffer(BUFFER_SIZE), true));
      check(offset, size);
      data = bytes.subarray(offset, offset + size);
    } else {
      const dataPos = buffer(BUFFER_DATA);
      if (dataPos === null) { data = new Uint8Array(0); } else { const [s, len] = vector(dataPos); check(s, len); data = bytes.subarray(s, s + len); }
    }
    out[name] = data;
  }
  return out;
}

// mask2face's JSON entry as an object, or null when the file has none (a detector, a foreign model).
export function mask2faceMetadata(bytes) {
  const raw = readMetadata(bytes).mask2face;
  return raw ? JSON.parse(new TextDecoder().decode(raw)) : null;
}
