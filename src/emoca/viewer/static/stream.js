// Per-track frame streams: meta.json once, then chunks of frames on demand.
// Vertices arrive as float16 (half the bytes of float32); a 64k-entry table decodes them.
// Only a few chunks around the current frame are kept, so an hour of video costs no more
// memory than a minute.

const HALF = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity)
      : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

export function halfToFloat(u16) {
  const out = new Float32Array(u16.length);
  for (let i = 0; i < u16.length; i++) out[i] = HALF[u16[i]];
  return out;
}

async function fetchOk(url, kind) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return kind === 'json' ? r.json() : r.arrayBuffer();
}

export class TrackStream {
  constructor(meta, keep = 12) {
    this.meta = meta;
    this.keep = keep;
    this.chunks = new Map(); // chunk index -> Promise<{verts, data}>
    this.faces = null;
  }

  static async open(url) {
    const s = new TrackStream(await fetchOk(url, 'json'));
    if (s.meta.faces) s.faces = new Uint32Array(await fetchOk(s.meta.faces, 'bin'));
    return s;
  }

  get frames() { return this.meta.frames; }

  // index of the track frame shown at video time t (s): the last one at or before t,
  // -1 before the first; `gap` true when the face is absent at t (more than 1.5 frames away)
  frameAt(t, fps) {
    const times = this.meta.time;
    let lo = 0, hi = times.length - 1, best = -1;
    const eps = 1e-3; // seconds: float noise, well under any frame period
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (times[mid] <= t + eps) { best = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return best;
  }

  _url(template, c) { return template.replace('{chunk}', String(c).padStart(5, '0')); }

  chunk(c) {
    if (!this.chunks.has(c)) {
      const m = this.meta;
      const p = Promise.all([
        m.vertex_count ? fetchOk(this._url(m.verts, c), 'bin') : Promise.resolve(null),
        fetchOk(this._url(m.frame_data, c), 'json'),
      ]).then(([buf, data]) => ({ verts: buf ? new Uint16Array(buf) : null, data }));
      p.catch(() => this.chunks.delete(c));
      this.chunks.set(c, p);
      while (this.chunks.size > this.keep) this.chunks.delete(this.chunks.keys().next().value);
    } else { // move to the back: most recently used
      const p = this.chunks.get(c);
      this.chunks.delete(c);
      this.chunks.set(c, p);
    }
    return this.chunks.get(c);
  }

  // everything about track frame i: {positions: Float32Array | null, cam, crop_to_image,
  // weights, landmarks2d}; also asks for the next chunk so playback does not wait
  async frame(i) {
    const c = Math.floor(i / this.meta.chunk), k = i - c * this.meta.chunk;
    if (c + 1 < this.meta.chunks) this.chunk(c + 1);
    const { verts, data } = await this.chunk(c);
    const n = this.meta.vertex_count * 3;
    const pick = (a) => (a ? a[k] : null);
    return {
      index: i,
      positions: verts ? halfToFloat(verts.subarray(k * n, (k + 1) * n)) : null,
      cam: pick(data.cam), crop_to_image: pick(data.crop_to_image),
      weights: pick(data.weights), landmarks2d: pick(data.landmarks2d),
    };
  }
}
