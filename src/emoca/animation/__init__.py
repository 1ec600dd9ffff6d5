"""Animation: captured performances as animated glTF (FLAME skinned mesh, ICT/ARKit morphs),
curves for animation tools (Live Link Face CSV) and FLAME <-> ARKit retargeting."""
