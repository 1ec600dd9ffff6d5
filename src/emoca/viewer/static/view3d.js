// The 3D face (perspective, orbit camera) and the same mesh drawn over the input frame
// (orthographic camera in image pixels, through the output's camera and crop matrix).
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

export const BACKGROUND = 0x20232a; // the 3D pane's clear colour (the test looks for it)

function greyMaterial(wireframe) {
  return new THREE.MeshStandardMaterial({ color: 0xc8c8c8, roughness: 0.75, metalness: 0,
    side: THREE.DoubleSide, wireframe });
}

// model point -> image pixel, as README "Output files and conventions" states:
// crop x' = s (x + tx), y' = -s (y + ty) in [-1, 1]; crop pixel = (x' + 1) S / 2 - 0.5;
// image pixel = crop_to_image @ crop pixel. Depth keeps the model's z (towards the viewer).
export function modelToImage(cam, cropToImage, S) {
  const [s, tx, ty] = cam, k = (s * S) / 2;
  const C = new THREE.Matrix4().set(
    k, 0, 0, k * tx + S / 2 - 0.5,
    0, -k, 0, -k * ty + S / 2 - 0.5,
    0, 0, k, 0,
    0, 0, 0, 1);
  const a = cropToImage; // row-major 3x3, affine
  const A = new THREE.Matrix4().set(
    a[0], a[1], 0, a[2],
    a[3], a[4], 0, a[5],
    0, 0, Math.hypot(a[0], a[3]), 0,
    0, 0, 0, 1);
  return A.multiply(C);
}

export class View3D {
  constructor(canvas, overlayCanvas) {
    this.canvas = canvas;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
    this.renderer.setClearColor(BACKGROUND);
    this.scene = new THREE.Scene();
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x444444, 1.6));
    this.camera = new THREE.PerspectiveCamera(30, 1, 0.001, 1000);
    this.head = new THREE.DirectionalLight(0xffffff, 1.6);
    this.camera.add(this.head);
    this.scene.add(this.camera);
    this.controls = new OrbitControls(this.camera, canvas);
    this.root = new THREE.Group();
    this.scene.add(this.root);

    this.ocanvas = overlayCanvas;
    this.orenderer = new THREE.WebGLRenderer({ canvas: overlayCanvas, antialias: true, alpha: true });
    this.orenderer.setClearColor(0x000000, 0);
    this.oscene = new THREE.Scene();
    this.oscene.add(new THREE.AmbientLight(0xffffff, 0.9));
    const ol = new THREE.DirectionalLight(0xffffff, 1.4);
    ol.position.set(0, 0, 1);
    this.oscene.add(ol);
    this.ocamera = new THREE.OrthographicCamera(0, 1, 0, 1, -1e5, 1e5);
    this.oroot = new THREE.Group();
    this.oscene.add(this.oroot);
    this.omaterial = new THREE.MeshLambertMaterial({ color: 0xd0d0d0, side: THREE.DoubleSide,
      transparent: true, opacity: 0.85 });

    this.object = null;
    this.mode = { view: 'textured', wireframe: false };
    this.originalMaterials = new Map();
    this.overlay = null; // {w, h, matrix}
    this.mixer = null;
    this.trackMesh = null;
  }

  clear() {
    this.root.clear();
    this.oroot.clear();
    this.object = null;
    this.trackMesh = null;
    this.mixer = null;
    this.originalMaterials.clear();
    this.overlay = null;
  }

  // a loaded GLB scene / OBJ group; frames the camera on it
  show(object, { frame = true } = {}) {
    this.root.clear();
    this.oroot.clear();
    this.originalMaterials.clear();
    this.object = object;
    this.root.add(object);
    object.updateMatrixWorld(true);
    object.traverse((o) => {
      if (!o.isMesh) return;
      // glTF's metallicFactor defaults to 1 when a file leaves it out (trimesh's exports
      // do): a metal face renders near black without an environment map
      if (o.material && o.material.isMeshStandardMaterial) o.material.metalness = 0;
      this.originalMaterials.set(o, o.material);
      const om = new THREE.Mesh(o.geometry, this.omaterial);
      om.matrixAutoUpdate = false;
      om.matrix.copy(o.matrixWorld);
      om.frustumCulled = false;
      o.frustumCulled = false;
      this.oroot.add(om);
    });
    this.applyMode();
    if (frame) this.frame(object);
  }

  frame(object) {
    const box = new THREE.Box3().setFromObject(object);
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    const r = sphere.radius || 1;
    this.controls.target.copy(sphere.center);
    this.camera.near = r / 100;
    this.camera.far = r * 100;
    this.camera.position.copy(sphere.center).add(new THREE.Vector3(0, 0, r * 3.6));
    this.camera.updateProjectionMatrix();
    this.controls.update();
  }

  // a track: one mesh whose positions change per frame
  showTrack(faces, positions) {
    const geo = new THREE.BufferGeometry();
    geo.setIndex(new THREE.BufferAttribute(faces, 1));
    geo.setAttribute('position', new THREE.BufferAttribute(positions, 3));
    geo.computeVertexNormals();
    const mesh = new THREE.Mesh(geo, greyMaterial(false));
    this.show(mesh);
    this.trackMesh = mesh;
  }

  updatePositions(positions) {
    const geo = this.trackMesh.geometry, attr = geo.getAttribute('position');
    attr.array.set(positions);
    attr.needsUpdate = true;
    geo.computeVertexNormals();
  }

  setMode(mode) {
    this.mode = { ...this.mode, ...mode };
    this.applyMode();
  }

  applyMode() {
    const { view, wireframe } = this.mode;
    for (const [mesh, orig] of this.originalMaterials) {
      const textured = view === 'textured' && orig && (orig.map || orig.vertexColors);
      if (textured) {
        mesh.material = orig;
        orig.wireframe = wireframe;
      } else {
        if (!mesh.userData.grey) mesh.userData.grey = greyMaterial(wireframe);
        mesh.userData.grey.wireframe = wireframe;
        mesh.material = mesh.userData.grey;
      }
    }
    this.omaterial.wireframe = wireframe;
  }

  // overlay: image size (pixels) and the model->image matrix of the current frame; null hides
  setOverlay(o) { this.overlay = o; }

  resize() {
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    if (this.canvas.width !== Math.round(w * devicePixelRatio) ||
        this.canvas.height !== Math.round(h * devicePixelRatio)) {
      this.renderer.setPixelRatio(devicePixelRatio);
      this.renderer.setSize(w, h, false);
      this.camera.aspect = w / Math.max(1, h);
      this.camera.updateProjectionMatrix();
    }
  }

  // box: where the media is drawn inside its pane (CSS pixels), for the overlay canvas
  render(box) {
    this.resize();
    this.renderer.render(this.scene, this.camera);
    const o = this.overlay;
    const c = this.ocanvas;
    if (!o || !box) { c.style.display = 'none'; return; }
    c.style.display = 'block';
    Object.assign(c.style, { left: `${box.left}px`, top: `${box.top}px`,
      width: `${box.width}px`, height: `${box.height}px` });
    this.orenderer.setPixelRatio(devicePixelRatio);
    this.orenderer.setSize(box.width, box.height, false);
    // pixel centres at integers: image pixel i spans [i - 0.5, i + 0.5]. Image y runs down;
    // the camera sees -y instead of a flipped projection, so the two mirrorings (model y up
    // -> crop y down, image y down -> screen y up) cancel and triangles keep their winding
    Object.assign(this.ocamera, { left: -0.5, right: o.w - 0.5, top: 0.5, bottom: 0.5 - o.h });
    this.ocamera.updateProjectionMatrix();
    this.oroot.matrixAutoUpdate = false;
    this.oroot.matrix.makeScale(1, -1, 1).multiply(o.matrix);
    this.oroot.matrixWorldNeedsUpdate = true;
    this.orenderer.render(this.oscene, this.ocamera);
  }
}
