#!/usr/bin/env bash
# One line naming the machine a benchmark ran on: kernel, cores, CPU model, and the vector
# extensions the tools pick kernels by (AVX2 + FMA, AVX-512), plus which GEMM build
# verify-equivalence uses there (DOCONV_GEMM overrides it).
flags="$(grep -m1 '^flags' /proc/cpuinfo)"
vector=()
for f in avx2 fma avx512f avx512dq avx512bw avx512vl; do
  case " ${flags#*:} " in *" $f "*) vector+=("$f") ;; esac
done
gemm="${DOCONV_GEMM:-}"
if [ -z "$gemm" ]; then
  case " ${vector[*]} " in
    *" avx512vl "*) gemm=avx512 ;;
    *" fma "*) gemm=avx2 ;;
    *) gemm=portable ;;
  esac
fi
echo "$(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); vector extensions: ${vector[*]:-none}; verify-equivalence GEMM: $gemm"
