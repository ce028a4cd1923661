;; easter: a library module for easter_main.c: exports easter(), which returns 17.
(module
  (func (export "easter") (result i32)
    i32.const 17))
