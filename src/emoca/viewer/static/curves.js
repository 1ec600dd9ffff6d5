// Emotion curves on a 2D canvas: valence and arousal lines (top), expression probabilities
// stacked (bottom), the current time as a vertical line; a click reports the time under it.

export const COLORS = {
  valence: '#4fc3f7', arousal: '#ffb74d', marker: '#ffffff', grid: '#3a3f4a',
  probs: ['#9e9e9e', '#ffd54f', '#64b5f6', '#ba68c8', '#4db6ac', '#81c784', '#e57373', '#f06292'],
};

export class Curves {
  constructor(canvas, onSeek) {
    this.canvas = canvas;
    this.curves = null;
    this.t0 = 0;
    this.t1 = 1;
    this.pointsDrawn = 0;
    canvas.addEventListener('click', (ev) => {
      if (!this.curves) return;
      const r = canvas.getBoundingClientRect();
      const x = (ev.clientX - r.left) / r.width;
      onSeek(this.t0 + Math.min(1, Math.max(0, x)) * (this.t1 - this.t0));
    });
  }

  set(curves, t0, t1) {
    this.curves = curves;
    this.t0 = t0;
    this.t1 = t1 > t0 ? t1 : t0 + 1;
  }

  draw(tNow) {
    const c = this.canvas, g = c.getContext('2d');
    const w = (c.width = Math.max(100, Math.round(c.clientWidth * devicePixelRatio)));
    const h = c.height;
    g.clearRect(0, 0, w, h);
    this.pointsDrawn = 0;
    const cv = this.curves;
    g.font = `${11 * devicePixelRatio}px system-ui`;
    if (!cv) {
      g.fillStyle = '#777';
      g.fillText('no per-frame emotion in this output', 10, 20);
      return;
    }
    const x = (t) => ((t - this.t0) / (this.t1 - this.t0)) * (w - 1);
    const top = h * 0.5, pad = 4;
    const yVA = (v) => pad + (1 - (Math.max(-1, Math.min(1, v)) + 1) / 2) * (top - 2 * pad);
    if (cv.valence) { // zero line of valence/arousal, and the floor of the top half
      g.strokeStyle = COLORS.grid;
      g.beginPath(); g.moveTo(0, yVA(0)); g.lineTo(w, yVA(0)); g.moveTo(0, top); g.lineTo(w, top);
      g.stroke();
    }
    const n = cv.time.length;
    if (cv.probs) { // stacked areas, bottom half, one column per point
      const labels = cv.labels || [];
      for (let i = 0; i < n; i++) {
        const xa = x(cv.time[i]), xb = i + 1 < n ? x(cv.time[i + 1]) : xa + 2;
        let acc = 0;
        for (let k = 0; k < cv.probs[i].length; k++) {
          const p = cv.probs[i][k];
          g.fillStyle = COLORS.probs[k % COLORS.probs.length];
          g.fillRect(xa, h - (acc + p) * (h - top - 2), Math.max(1, xb - xa), p * (h - top - 2));
          acc += p;
        }
      }
      // legend in one row on the top half's floor, on a dark strip so it stays readable
      const lx = 6 * devicePixelRatio, ly = top - 5 * devicePixelRatio;
      let xx = lx + 120 * devicePixelRatio;
      g.fillStyle = 'rgba(24, 26, 31, 0.85)';
      g.fillRect(xx - 4, ly - 11 * devicePixelRatio, w - xx, 14 * devicePixelRatio);
      labels.forEach((name, k) => {
        g.fillStyle = COLORS.probs[k % COLORS.probs.length];
        g.fillRect(xx, ly - 8 * devicePixelRatio, 8 * devicePixelRatio, 8 * devicePixelRatio);
        g.fillText(name, xx + 11 * devicePixelRatio, ly);
        xx += (16 + g.measureText(name).width / devicePixelRatio) * devicePixelRatio;
      });
    }
    if (cv.series) { // blendshape weights 0..1 over the whole height
      const y01 = (v) => pad + (1 - Math.max(0, Math.min(1, v))) * (h - 2 * pad);
      let lx = 6 * devicePixelRatio;
      Object.entries(cv.series).forEach(([name, vals], k) => {
        const col = COLORS.probs[(k + 1) % COLORS.probs.length];
        g.strokeStyle = col;
        g.lineWidth = 2 * devicePixelRatio;
        g.beginPath();
        vals.forEach((v, i) => (i ? g.lineTo(x(cv.time[i]), y01(v)) : g.moveTo(x(cv.time[i]), y01(v))));
        g.stroke();
        this.pointsDrawn += vals.length;
        g.fillStyle = col;
        g.fillText(name, lx, 14 * devicePixelRatio);
        lx += g.measureText(name).width + 14 * devicePixelRatio;
      });
    }
    for (const key of ['valence', 'arousal']) {
      if (!cv[key]) continue;
      g.strokeStyle = COLORS[key];
      g.lineWidth = 2 * devicePixelRatio;
      g.beginPath();
      cv[key].forEach((v, i) => (i ? g.lineTo(x(cv.time[i]), yVA(v)) : g.moveTo(x(cv.time[i]), yVA(v))));
      if (n === 1) g.lineTo(x(cv.time[0]) + 4, yVA(cv[key][0]));
      g.stroke();
      this.pointsDrawn += cv[key].length;
      g.fillStyle = COLORS[key];
      g.fillText(key, 6 + (key === 'arousal' ? 60 : 0) * devicePixelRatio, 14 * devicePixelRatio);
    }
    g.lineWidth = 1;
    if (tNow != null) {
      const xm = Math.round(Math.min(w - 2, Math.max(1, x(tNow)))); // 2 px, always on canvas
      g.fillStyle = COLORS.marker;
      g.fillRect(xm - 1, 0, 2, h);
    }
  }
}

// one row per name: label, bar (0..1), value; `values` maps name -> number
export function drawBars(title, values, sortByValue = false) {
  let entries = Object.entries(values || {});
  if (sortByValue) entries = entries.sort((a, b) => b[1] - a[1]);
  const rows = entries.map(([name, v]) => {
    const pct = Math.round(Math.max(0, Math.min(1, Math.abs(v))) * 100);
    return `<div class="bar"><span class="name" title="${name}">${name}</span>` +
      `<span class="track"><span class="fill" style="width:${pct}%;display:block"></span></span>` +
      `<span class="val">${v.toFixed(2)}</span></div>`;
  });
  return `<h4>${title}</h4>${rows.join('')}`;
}
