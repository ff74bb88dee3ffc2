;; A gain in the copy ABI (Emscripten's callback shape), written by hand.
;; AudioSampleFrame = { i32 numberOfChannels; i32 samplesPerChannel; f32* data }
;; AudioParamFrame  = { i32 length; f32* data }
(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "malloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    ;; grow when the bump pointer passes the end
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.div_u (local.get $size) (i32.const 65536)) (i32.const 1))))))
    (local.get $p))
  (func (export "process") (param $numInputs i32) (param $inputs i32) (param $numOutputs i32) (param $outputs i32)
                           (param $numParams i32) (param $params i32) (param $userData i32) (result i32)
    (local $n i32) (local $i i32) (local $in i32) (local $out i32) (local $gain i32) (local $glen i32)
    (local.set $n (i32.mul (i32.load (local.get $inputs)) (i32.load offset=4 (local.get $inputs))))
    (local.set $in (i32.load offset=8 (local.get $inputs)))
    (local.set $out (i32.load offset=8 (local.get $outputs)))
    (local.set $glen (i32.load (local.get $params)))
    (local.set $gain (i32.load offset=4 (local.get $params)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2)))
          (f32.mul
            (f32.load (i32.add (local.get $in) (i32.shl (local.get $i) (i32.const 2))))
            (f32.load (i32.add (local.get $gain)
              (i32.shl (select (i32.and (local.get $i) (i32.const 127)) (i32.const 0) (i32.gt_u (local.get $glen) (i32.const 1))) (i32.const 2))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1)))
