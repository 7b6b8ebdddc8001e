// Host (g++) driver for the functions of warp.cuh: the same per-element arithmetic the
// GPU kernels run, looped over outputs on one CPU thread, exported with C linkage for
// ctypes (warptheory/_engine_host.py).  Its purpose is verification: CI has no GPU,
// so it runs this build and compares it with the numpy reference.
//
// warptheory/_engine_host.py compiles  warp.cuh + Kernel.c_source("wt_phi") + this
// file  as one translation unit.  The scatter uses the same three deterministic
// passes as the GPU (pass 2 is a stable counting sort here, a radix sort of unique
// keys there; both give the same order), so the host result is what the GPU computes.
#ifndef WARPTHEORY_WARP_CUH
#include "warp.cuh"
#endif

#include <new>
#include <vector>

namespace {

enum WtDtype { WT_FLOAT32 = 0, WT_FLOAT64 = 1 };
enum WtStatus { WT_OK = 0, WT_BAD_ARGUMENT = 1, WT_OUT_OF_MEMORY = 2 };

// in_shape and out_shape hold 3 sizes each (1 beyond d).
template <int D>
WtPlan<D> make_plan(const long long* in_shape, const long long* out_shape, int relative) {
    return wt_make_plan<D>(in_shape[0], in_shape[1], in_shape[2], out_shape[0], out_shape[1], out_shape[2], relative);
}

template <typename T, int D>
void gather_all(const T* src, const T* eps, T* out, long long batch, long long channels, const long long* in_shape,
                const long long* out_shape, int relative, int padding) {
    const WtPlan<D> plan = make_plan<D>(in_shape, out_shape, relative);
    for (long long b = 0; b < batch; ++b)
        for (long long v = 0; v < plan.out.count; ++v)
            wt_gather_output<T, D>(src, eps, out, b, v, channels, 0, channels, plan, padding);
}

template <typename T, int D>
void position_derivative_all(const T* outer, const T* src, const T* eps, T* out, long long batch,
                             long long channels, const long long* in_shape, const long long* out_shape, int relative,
                             int padding) {
    const WtPlan<D> plan = make_plan<D>(in_shape, out_shape, relative);
    for (long long b = 0; b < batch; ++b)
        for (long long v = 0; v < plan.out.count; ++v)
            wt_position_derivative_output<T, D>(outer, src, eps, out, b, v, channels, plan, padding);
}

template <typename T, int D>
void scatter_all(const T* src, const T* eps, T* out, long long batch, long long channels, const long long* in_shape,
                 const long long* out_shape, int relative, int padding) {
    const WtPlan<D> plan = make_plan<D>(in_shape, out_shape, relative);
    constexpr int C = 1 << D;
    const long long M = plan.in.count;
    const long long E = plan.out.count * C;
    std::vector<long long> target(E);
    std::vector<double> weight(E);
    std::vector<long long> bounds(M + 1);
    std::vector<long long> source(E);
    std::vector<double> sorted_weight(E);
    for (long long b = 0; b < batch; ++b) {
        // Pass 1: every source position's 2^D entries.
        for (long long v = 0; v < plan.out.count; ++v)
            wt_scatter_entries<T, D>(eps, b, v, plan, padding, &target[v * C], &weight[v * C]);
        // Pass 2: stable counting sort by target (ascending entry number within a target),
        // the order the GPU's sort of unique keys produces.
        for (long long u = 0; u <= M; ++u) bounds[u] = 0;
        for (long long e = 0; e < E; ++e)
            if (target[e] != WT_NO_TARGET) ++bounds[target[e] + 1];
        for (long long u = 0; u < M; ++u) bounds[u + 1] += bounds[u];
        std::vector<long long> cursor(bounds.begin(), bounds.end() - 1);
        for (long long e = 0; e < E; ++e) {
            if (target[e] == WT_NO_TARGET) continue;
            const long long j = cursor[target[e]]++;
            source[j] = e / C;
            sorted_weight[j] = weight[e];
        }
        // Pass 3: one ordered sum per target.
        for (long long u = 0; u < M; ++u)
            wt_gather_segment<T, long long>(src, out, b, u, channels, M, plan.out.count, 0, channels, source.data(),
                                            sorted_weight.data(), bounds[u], bounds[u + 1]);
    }
}

}  // namespace

#define WT_DISPATCH(dtype, d, FN, ...)                                          \
    do {                                                                        \
        if ((dtype) == WT_FLOAT32) {                                            \
            using T = float;                                                    \
            if ((d) == 1) FN<T, 1>(__VA_ARGS__);                                \
            else if ((d) == 2) FN<T, 2>(__VA_ARGS__);                           \
            else if ((d) == 3) FN<T, 3>(__VA_ARGS__);                           \
            else return WT_BAD_ARGUMENT;                                        \
        } else if ((dtype) == WT_FLOAT64) {                                     \
            using T = double;                                                   \
            if ((d) == 1) FN<T, 1>(__VA_ARGS__);                                \
            else if ((d) == 2) FN<T, 2>(__VA_ARGS__);                           \
            else if ((d) == 3) FN<T, 3>(__VA_ARGS__);                           \
            else return WT_BAD_ARGUMENT;                                        \
        } else {                                                                \
            return WT_BAD_ARGUMENT;                                             \
        }                                                                       \
    } while (0)

extern "C" {

// The arguments' contract: every array C-contiguous of the dtype code; in_shape and
// out_shape have 3 entries (1 beyond d); relative 0 or 1; padding a WtPadding value.
// Returns a WtStatus.

int wt_host_gather(int dtype, int d, const void* src, const void* eps, void* out, long long batch,
                   long long channels, const long long* in_shape, const long long* out_shape, int relative,
                   int padding) {
    if (padding < WT_PAD_ZEROS || padding > WT_PAD_BORDER) return WT_BAD_ARGUMENT;
    WT_DISPATCH(dtype, d, gather_all, (const T*)src, (const T*)eps, (T*)out, batch, channels, in_shape, out_shape,
                relative, padding);
    return WT_OK;
}

int wt_host_position_derivative(int dtype, int d, const void* outer, const void* src, const void* eps, void* out,
                                long long batch, long long channels, const long long* in_shape,
                                const long long* out_shape, int relative, int padding) {
    if (padding < WT_PAD_ZEROS || padding > WT_PAD_BORDER) return WT_BAD_ARGUMENT;
    WT_DISPATCH(dtype, d, position_derivative_all, (const T*)outer, (const T*)src, (const T*)eps, (T*)out, batch,
                channels, in_shape, out_shape, relative, padding);
    return WT_OK;
}

int wt_host_scatter(int dtype, int d, const void* src, const void* eps, void* out, long long batch,
                    long long channels, const long long* in_shape, const long long* out_shape, int relative,
                    int padding) {
    if (padding < WT_PAD_ZEROS || padding > WT_PAD_BORDER) return WT_BAD_ARGUMENT;
    try {
        WT_DISPATCH(dtype, d, scatter_all, (const T*)src, (const T*)eps, (T*)out, batch, channels, in_shape,
                    out_shape, relative, padding);
    } catch (const std::bad_alloc&) {
        return WT_OUT_OF_MEMORY;
    }
    return WT_OK;
}

}  // extern "C"
