// Independent checks of a GLB, run by tests/test_animation_gltf.py:
//   node check.mjs FILE.glb OUT_PREFIX
// writes OUT_PREFIX.json (Khronos glTF Validator report summary, key times, vertex count)
// and OUT_PREFIX.f32 (float32 world-space vertices, key frames x vertices x 3) as three.js
// evaluates the first mesh (morph targets + skinning) at every key frame of the animation.
import { readFileSync, writeFileSync } from "node:fs";
import validator from "gltf-validator";
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

const [file, prefix] = process.argv.slice(2);
const bytes = new Uint8Array(readFileSync(file));

const report = await validator.validateBytes(bytes, { maxIssues: 100 });

const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
// node has no image decoder: textures are skipped (this checks geometry; the validator
// checks the images)
const loader = new GLTFLoader().register(() => ({ name: "skip_textures",
  loadTexture: () => Promise.resolve(null) }));
const gltf = await new Promise((resolve, reject) => loader.parse(buffer, "", resolve, reject));
const scene = gltf.scene;
let mesh = null;
scene.traverse((o) => { if (o.isMesh && mesh === null) mesh = o; });
const clip = gltf.animations[0];
const times = clip ? Array.from(clip.tracks[0].times) : [0];
const mixer = new THREE.AnimationMixer(scene);
if (clip) {
  const action = mixer.clipAction(clip);
  action.setLoop(THREE.LoopOnce, 1);
  action.clampWhenFinished = true;
  action.play();
}
const n = mesh.geometry.attributes.position.count;
const out = new Float32Array(times.length * n * 3);
const v = new THREE.Vector3();
times.forEach((t, f) => {
  mixer.setTime(t);
  scene.updateMatrixWorld(true);
  for (let i = 0; i < n; i++) {
    mesh.getVertexPosition(i, v);
    v.applyMatrix4(mesh.matrixWorld);
    out.set([v.x, v.y, v.z], (f * n + i) * 3);
  }
});
writeFileSync(prefix + ".f32", Buffer.from(out.buffer));
writeFileSync(prefix + ".json", JSON.stringify({
  validator: {
    numErrors: report.issues.numErrors, numWarnings: report.issues.numWarnings,
    messages: report.issues.messages.slice(0, 20).map((m) => `${m.severity} ${m.code} ${m.pointer}: ${m.message}`),
  },
  times, vertices: n, skinned: mesh.isSkinnedMesh === true,
  morphTargets: mesh.morphTargetInfluences ? mesh.morphTargetInfluences.length : 0,
  threeRevision: THREE.REVISION,
}));
