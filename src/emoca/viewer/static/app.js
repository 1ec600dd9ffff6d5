// emoca view: the page. Plain ES modules, no build step: the files served are the files in
// the package, so `emoca view` needs nothing but Python, and the page works offline.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { OBJLoader } from 'three/addons/loaders/OBJLoader.js';
import { TrackStream } from './stream.js';
import { Curves, drawBars } from './curves.js';
import { View3D, modelToImage } from './view3d.js';

const $ = (id) => document.getElementById(id);
const video = $('video'), photo = $('photo');
const view = new View3D($('three-canvas'), $('overlay-canvas'));
const curves = new Curves($('curves'), (t) => seekTime(t));
const gltf = new GLTFLoader(), objLoader = new OBJLoader();

// what the page shows, for people (the status line) and for tests (window.emocaViewer)
const state = {
  ready: false, errors: [], item: null, sub: null, kind: null, frame: -1, frameShown: -1,
  time: 0, frames: 0, tracks: [], hasVertices: false, curvePoints: 0, note: '',
};
let index = null, item = null, sub = null, stream = null, anim = null;
let wanted = -1, showing = Promise.resolve(), lastTick = performance.now();
const cache = new Map(); // url -> Promise<object>
const waiters = []; // [frame, resolve]

function setBars(title, values, sortByValue = false) {
  state.bars = { title, values };
  $('bars').innerHTML = drawBars(title, values, sortByValue);
}

function note(text) { state.note = text; $('three-note').textContent = text || ''; }
function fail(e) {
  const msg = e && e.message ? e.message : String(e);
  state.errors.push(msg);
  $('status').textContent = msg;
}

function load(url, loader) {
  if (!cache.has(url)) cache.set(url, loader.loadAsync(url));
  return cache.get(url);
}

function invert3(m) { // row-major 3x3 (nested) -> row-major flat inverse
  const a = new THREE.Matrix3().set(...m.flat()).invert().elements; // column-major
  return [a[0], a[3], a[6], a[1], a[4], a[7], a[2], a[5], a[8]];
}

function mediaSize() {
  if (item && item.type === 'video' && video.videoWidth) return [video.videoWidth, video.videoHeight];
  if (item && item.type === 'image' && photo.naturalWidth) return [photo.naturalWidth, photo.naturalHeight];
  return item && item.size ? item.size : null;
}

function mediaBox() { // where object-fit: contain draws the media inside its pane
  const size = mediaSize();
  if (!size) return null;
  const pane = $('media-box').getBoundingClientRect();
  const s = Math.min(pane.width / size[0], pane.height / size[1]);
  const w = size[0] * s, h = size[1] * s;
  return { left: (pane.width - w) / 2, top: (pane.height - h) / 2, width: w, height: h };
}

function setOverlay(cam, cropToImage, cropSize) {
  const size = mediaSize();
  if (!$('overlay').checked || !cam || !cropToImage || !size) { view.setOverlay(null); return; }
  view.setOverlay({ w: size[0], h: size[1], matrix: modelToImage(cam, cropToImage, cropSize) });
}

// ----------------------------------------------------------------------------- choosing
async function selectItem(id) {
  item = index.items.find((it) => it.id === id) || index.items[0];
  state.item = item.id;
  state.kind = item.type;
  $('item').value = item.id;
  document.querySelectorAll('#gallery figure').forEach((f) =>
    f.classList.toggle('sel', f.dataset.id === item.id));
  video.hidden = item.type === 'image' || !(item.media || item.overlay);
  photo.hidden = item.type !== 'image' || !item.media;
  if (item.type === 'image') {
    video.removeAttribute('src');
    if (item.media) {
      photo.src = item.media;
      await photo.decode().catch(() => {});
    }
  } else if (item.media || item.overlay) {
    const src = item.media || item.overlay;
    if (video.getAttribute('src') !== src) {
      video.src = src;
      await new Promise((ok) => {
        if (video.readyState >= 1) ok();
        video.addEventListener('loadedmetadata', ok, { once: true });
        video.addEventListener('error', () => { fail(`${src}: the browser cannot play it`); ok(); },
          { once: true });
      });
    }
  }
  const subs = item.type === 'video' ? item.tracks : item.faces;
  $('sub-label').textContent = item.type === 'video' ? 'track' : 'face';
  $('sub').innerHTML = subs.map((s) => `<option>${s.id}</option>`).join('');
  $('sub').disabled = subs.length < 2;
  state.tracks = item.tracks.map((t) => t.id);
  if (item.type === 'animation') await selectAnimation();
  else if (subs.length) await selectSub(subs[0].id);
  else { view.clear(); note('no face found in this input'); }
}

async function selectSub(id) {
  const subs = item.type === 'video' ? item.tracks : item.faces;
  sub = subs.find((s) => s.id === id) || subs[0];
  state.sub = sub.id;
  $('sub').value = sub.id;
  stream = null;
  anim = null;
  view.clear();
  state.frame = state.frameShown = wanted = -1;
  if (item.type === 'video') await selectTrack();
  else await selectFace();
}

function transport(enabled) {
  for (const id of ['step-back', 'play', 'step-fwd', 'scrub']) $(id).disabled = !enabled;
}

async function selectFace() {
  state.frames = 1;
  transport(false);
  $('scrub').max = 0;
  curves.set(null);
  await showFaceObject();
  const f = sub;
  const m = f.image_to_crop ? invert3(f.image_to_crop) : null;
  setOverlay(f.cam, m, f.crop_size || 224);
  if (f.arkit) setBars('ARKit blendshapes', f.arkit, true);
  else if (f.emotion_codes || f.emotion) {
    const e = f.emotion || {};
    const v = { valence: e.valence ?? f.emotion_codes.valence, arousal: e.arousal ?? f.emotion_codes.arousal,
      ...(e.probabilities || {}) };
    setBars(`emotion${e.label ? ': ' + e.label : ''}`, v);
  } else setBars('', {});
  state.frameShown = state.frame = 0;
  note(f.glb ? '' : 'no mesh file in this face folder');
}

async function showFaceObject() {
  const f = sub, mode = $('view').value;
  let url = f.glb, obj = null;
  if (mode === 'detail' && f.detail_obj) url = f.detail_obj;
  if (!url) return;
  if (url.endsWith('.obj')) obj = (await load(url, objLoader)).clone();
  else obj = (await load(url, gltf)).scene.clone();
  view.show(obj);
  view.setMode({ view: mode, wireframe: $('wireframe').checked });
}

async function selectTrack() {
  transport(true);
  stream = await TrackStream.open(sub.meta);
  const m = stream.meta;
  state.frames = m.frames;
  state.hasVertices = !!m.vertex_count;
  $('scrub').max = m.frames - 1;
  curves.set(m.curves, m.time[0], m.time[m.frames - 1]);
  if (m.vertex_count) {
    const fr = await stream.frame(0);
    view.showTrack(stream.faces, fr.positions);
    note('');
  } else {
    if (sub.neutral_obj) view.show((await load(sub.neutral_obj, objLoader)).clone());
    note(`identity mesh only: ${m.no_vertices}`);
  }
  view.setMode({ view: $('view').value, wireframe: $('wireframe').checked });
  await showFrame(0);
}

async function selectAnimation() {
  transport(true);
  const g = await load(item.glb, gltf);
  const scene = g.scene; // one animation per page: no clone needed
  view.show(scene);
  view.setMode({ view: $('view').value, wireframe: $('wireframe').checked });
  view.mixer = new THREE.AnimationMixer(scene);
  const clip = g.animations[0];
  anim = { clip, action: clip ? view.mixer.clipAction(clip).play() : null, t: 0, playing: false,
    meshes: [] };
  scene.traverse((o) => { if (o.morphTargetInfluences && o.morphTargetDictionary) anim.meshes.push(o); });
  const meta = item.animation || {};
  const fps = item.fps || meta.fps || 30;
  item.fps = fps;
  // emoca animate's animation.json: animation time = video time - start_time_s; key frame
  // times in times_s (animation time)
  anim.offset = meta.start_time_s || 0;
  anim.times = Array.isArray(meta.times_s) ? meta.times_s : null;
  state.frames = item.frames || Math.max(1, Math.round((clip ? clip.duration : 0) * fps) + 1);
  $('scrub').max = state.frames - 1;
  curves.set(null);
  setAnimTime(0);
}

function animFrameTime(i) { // animation time of frame i (s)
  return anim.times ? anim.times[Math.max(0, Math.min(i, anim.times.length - 1))] : i / item.fps;
}

function setAnimTime(t) {
  if (!anim) return;
  anim.t = t;
  view.mixer.setTime(Math.max(0, t));
  let i = Math.round(t * item.fps);
  if (anim.times) { // the last key frame at or before t
    i = 0;
    while (i + 1 < anim.times.length && anim.times[i + 1] <= t + 1e-3) i++;
  }
  state.frame = state.frameShown = Math.max(0, Math.min(state.frames - 1, i));
  const m = anim.meshes[0];
  if (m) {
    const w = {};
    for (const [name, k] of Object.entries(m.morphTargetDictionary)) w[name] = m.morphTargetInfluences[k];
    setBars('morph targets', w, true);
  }
  resolveWaiters();
}

// ------------------------------------------------------------------------------ frames
function showFrame(i) {
  wanted = i;
  showing = showing.then(async () => {
    if (wanted !== i || !stream) return;
    const fr = await stream.frame(i);
    if (wanted !== i) return;
    if (fr.positions && view.trackMesh) view.updatePositions(fr.positions);
    setOverlay(fr.cam, fr.crop_to_image, stream.meta.crop_size);
    if (fr.weights && stream.meta.blendshape_names) {
      const w = Object.fromEntries(stream.meta.blendshape_names.map((n, k) => [n, fr.weights[k]]));
      setBars('ARKit blendshapes', w, true);
    } else if (stream.meta.curves && stream.meta.curves.valence) {
      const c = stream.meta.curves, t = stream.meta.time[i];
      let b = 0;
      while (b + 1 < c.time.length && c.time[b + 1] <= t) b++;
      const v = { valence: c.valence[b], arousal: c.arousal[b] };
      (c.labels || []).forEach((n, k) => { v[n] = c.probs[b][k]; });
      setBars('emotion', v);
    }
    state.frameShown = i;
    resolveWaiters();
  }).catch(fail);
  return showing;
}

function resolveWaiters() {
  for (let k = waiters.length - 1; k >= 0; k--) {
    if (waiters[k][0] === state.frameShown) {
      // two animation frames: the new mesh is drawn and composited before we answer
      const ok = waiters[k][1];
      requestAnimationFrame(() => requestAnimationFrame(() => ok(state.frameShown)));
      waiters.splice(k, 1);
    }
  }
}

function frameTime(i) {
  if (stream) return stream.meta.time[Math.max(0, Math.min(i, stream.frames - 1))];
  return i / (item.fps || 30);
}

function seekTime(t) {
  if (!video.hidden && (item.type === 'video' || anim)) { // the video is the clock
    video.currentTime = Math.max(0, t) + 0.25 / (item.fps || 30);
  } else if (anim) setAnimTime(Math.max(0, t - anim.offset));
}

function seekFrame(i) {
  i = Math.max(0, Math.min(i, state.frames - 1));
  const p = new Promise((ok) => waiters.push([i, ok]));
  if (item.type === 'video') {
    seekTime(frameTime(i));
    if (video.hidden) showFrame(i);
  } else if (anim && !video.hidden) seekTime(animFrameTime(i) + anim.offset); // video = clock
  else if (anim) setAnimTime(animFrameTime(i));
  resolveWaiters(); // already there
  return p;
}

function tick(now) {
  const dt = (now - lastTick) / 1000;
  lastTick = now;
  let t = null;
  if (item && item.type === 'video' && stream) {
    t = video.hidden ? frameTime(wanted) : video.currentTime;
    const i = video.hidden ? wanted : stream.frameAt(t, item.fps);
    if (i >= 0 && i !== wanted) showFrame(i);
    state.frame = i;
  } else if (anim) {
    if (!video.hidden && item.media) {
      const ta = video.currentTime - anim.offset;
      if (Math.abs(ta - anim.t) > 1e-4) setAnimTime(ta);
    } else if (anim.playing) {
      setAnimTime((anim.t + dt) % Math.max(anim.clip ? anim.clip.duration : 1, 1e-3));
    }
    t = anim.t;
  }
  state.time = t ?? 0;
  if (document.activeElement !== $('scrub') && state.frame >= 0) $('scrub').value = state.frame;
  $('frame-label').textContent = state.frames > 1 || item?.type !== 'image'
    ? `frame ${state.frame + 1}/${state.frames}  ${(t ?? 0).toFixed(2)} s` : 'photo';
  curves.draw(stream ? frameTime(Math.max(0, state.frameShown)) : null);
  state.curvePoints = curves.pointsDrawn;
  view.render(mediaBox());
  requestAnimationFrame(tick);
}

// ------------------------------------------------------------------------------ wiring
function playPause() {
  if (anim && (video.hidden || !item.media)) anim.playing = !anim.playing;
  else if (!video.hidden) (video.paused ? video.play() : video.pause()).catch?.(fail);
}

function wire() {
  $('item').addEventListener('change', (e) => selectItem(e.target.value).catch(fail));
  $('sub').addEventListener('change', (e) => selectSub(e.target.value).catch(fail));
  $('view').addEventListener('change', () => {
    if (item.type === 'image' && sub) showFaceObject().catch(fail);
    else view.setMode({ view: $('view').value });
  });
  $('wireframe').addEventListener('change', (e) => view.setMode({ wireframe: e.target.checked }));
  $('overlay').addEventListener('change', () => {
    if (item.type === 'image' && sub) selectFace().catch(fail);
    else if (stream) showFrame(Math.max(0, state.frameShown));
  });
  $('play').addEventListener('click', playPause);
  $('step-back').addEventListener('click', () => seekFrame(state.frame - 1));
  $('step-fwd').addEventListener('click', () => seekFrame(state.frame + 1));
  $('scrub').addEventListener('input', (e) => seekFrame(Number(e.target.value)));
  video.addEventListener('play', () => { $('play').innerHTML = '&#10074;&#10074;'; });
  video.addEventListener('pause', () => { $('play').innerHTML = '&#9654;'; });
  addEventListener('keydown', (e) => {
    if (e.target.tagName === 'SELECT' || e.target.tagName === 'INPUT' && e.target.type !== 'range') return;
    if (e.key === ' ') { e.preventDefault(); playPause(); }
    if (e.key === ',') seekFrame(state.frame - 1);
    if (e.key === '.') seekFrame(state.frame + 1);
  });
}

function gallery() {
  const photos = index.items.filter((it) => it.type === 'image');
  const g = $('gallery');
  if (index.items.length < 2) return;
  g.hidden = false;
  // thumbnails load lazily: a folder of thousands of photos opens at once
  g.innerHTML = index.items.map((it) => {
    const face = it.faces && it.faces[0];
    const thumb = it.media && it.type === 'image' ? it.media
      : face && (face.images.overlay_full || face.images.overlay) || '';
    const img = thumb ? `<img loading="lazy" src="${thumb}" alt="">`
      : `<div class="thumb">${it.type === 'video' ? '&#9654; video' : it.type}</div>`;
    return `<figure data-id="${it.id}">${img}<figcaption>${it.id} (${it.type})</figcaption></figure>`;
  }).join('');
  g.querySelectorAll('figure').forEach((f) =>
    f.addEventListener('click', () => selectItem(f.dataset.id).catch(fail)));
  state.gallery = photos.length;
}

async function main() {
  addEventListener('error', (e) => fail(e.error || e.message));
  addEventListener('unhandledrejection', (e) => fail(e.reason));
  wire();
  index = await (await fetch('data/index.json')).json();
  $('item').innerHTML = index.items.map((it) => `<option value="${it.id}">${it.id}</option>`).join('');
  gallery();
  const want = new URLSearchParams(location.search).get('item');
  await selectItem(want || index.items[0].id);
  requestAnimationFrame(tick);
  $('status').textContent = `${index.items.length} input(s) in ${index.root}`;
  state.ready = true;
}

window.emocaViewer = {
  state,
  select: async (itemId, subId) => {
    await selectItem(itemId);
    if (subId && subId !== state.sub) await selectSub(subId);
    return { ...state };
  },
  seekFrame,
  setView: (mode) => {
    if (mode.view) $('view').value = mode.view;
    if (mode.wireframe !== undefined) $('wireframe').checked = mode.wireframe;
    if (mode.overlay !== undefined) $('overlay').checked = mode.overlay;
    for (const id of ['view', 'wireframe', 'overlay']) $(id).dispatchEvent(new Event('change'));
  },
  get ready() { return state.ready; },
  // morph target weights of the animation's first morphing mesh, by name
  morphWeights: () => {
    const m = anim && anim.meshes[0];
    if (!m) return null;
    return Object.fromEntries(Object.entries(m.morphTargetDictionary)
      .map(([name, k]) => [name, m.morphTargetInfluences[k]]));
  },
};

main().catch(fail);
