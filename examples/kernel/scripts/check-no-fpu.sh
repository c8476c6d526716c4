#!/bin/sh
# Fails if a kernel ELF contains an x87, MMX or SSE instruction.
#
# The kernel itself never uses the FPU (it holds the running process's
# x87 state): only the process switch's fpu_init/fpu_save/fpu_restore
# (src/fpu.rs) may hold fninit/fnsave/frstor, one each. On
# i586 the usual culprit is a 64-bit atomic load or store (`AtomicU64`),
# which LLVM compiles to an x87 `fild`/`fistp` pair. Every x87 mnemonic
# starts with `f`, and no integer one does; MMX/SSE show up as %mm/%xmm
# operands. Prints the functions that hold such instructions.
#
# Usage: scripts/check-no-fpu.sh [ELF...]   (default: both `cargo xtask` builds)
set -eu
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || set -- \
    target/mode-2level/i586-unknown-linux-gnu/release/example-kernel \
    target/mode-pae/i586-unknown-linux-gnu/release/example-kernel
status=0
for elf in "$@"; do
    if [ ! -f "$elf" ]; then
        echo "$elf: no such file (a path relative to examples/kernel?)"
        status=1
        continue
    fi
    hits=$(objdump -d -C --no-show-raw-insn "$elf" | awk '
        />:$/ { fn = $0; sub(/^[0-9a-f]+ /, "", fn) }
        /^ *[0-9a-f]+:\t(fninit|fnsave|frstor)( |$)/ &&
            ((fn == "<fpu_init>:" && $2 == "fninit") ||
             (fn == "<fpu_save>:" && $2 == "fnsave") ||
             (fn == "<fpu_restore>:" && $2 == "frstor")) { next }
        /^ *[0-9a-f]+:\t(f[a-z0-9]*|emms)( |$)/ || /%x?mm[0-9]/ { print fn }' |
        sort | uniq -c)
    if [ -n "$hits" ]; then
        echo "$elf: FPU/SIMD instructions (count, function):"
        echo "$hits" | sed 's/^/  /'
        status=1
    else
        echo "$elf: no x87, MMX or SSE instructions"
    fi
done
exit $status
