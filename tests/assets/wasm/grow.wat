;; grow: prints "growing", then grows its memory one 64 KiB page at a time
;; until memory.grow is refused (the memory limit) and traps, as a program
;; whose allocation fails aborts (Rust's handle_alloc_error).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "growing\n")
  (func (export "_start")
    ;; One iovec at 0: the 8 bytes at 16.
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (block $refused
      (loop $more
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $more)))
    unreachable))
