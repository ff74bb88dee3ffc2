;; A gain in the byob ABI, written by hand: input and output regions of 8
;; channels each (over-allocated), gain from a PARAM region.
(module
  (import "byob" "register_buffer" (func $register (param i32 i32 i32 i32) (result i32)))
  (import "byob" "channel_count" (func $channels (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0..4096: input (8 channels x 512 bytes), 4096..8192: output, 8192..8704: gain values.
  (func (export "byob_init") (param $sample_rate f32) (param $max_frames i32) (result i32)
    (local $r i32)
    (local.set $r (call $register (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 4096)))
    (if (local.get $r) (then (return (local.get $r))))
    (local.set $r (call $register (i32.const 2) (i32.const 0) (i32.const 4096) (i32.const 4096)))
    (if (local.get $r) (then (return (local.get $r))))
    (call $register (i32.const 4) (i32.const 0) (i32.const 8192) (i32.const 512)))
  (func (export "byob_process") (param $frames i32) (result i32)
    (local $n i32) (local $i i32)
    ;; samples = input channels x frames
    (local.set $n (i32.mul (call $channels (i32.const 1) (i32.const 0)) (local.get $frames)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store offset=4096 (i32.shl (local.get $i) (i32.const 2))
          (f32.mul
            (f32.load (i32.shl (local.get $i) (i32.const 2)))
            (f32.load offset=8192 (i32.shl (i32.and (local.get $i) (i32.const 127)) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1)))
