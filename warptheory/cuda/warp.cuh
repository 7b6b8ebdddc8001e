// Per-element warp arithmetic shared by the GPU kernels and the host build
// (paper eqs 2-4 / 16-18 for warp, 49-51 for unwarp; paper_notes/cuda_engine.md).
//
// Everything here is a __host__ __device__ inline function (PyTorch's GridSampler.h
// pattern): warp_kernels.cu wraps them in thin __global__ kernels for CuPy, and
// warp_host.cpp loops over them on the CPU, so a machine without a GPU still runs
// the exact arithmetic the GPU runs and the tests compare it with the numpy reference.
//
// Layout (C order, 64-bit offsets), for a plan with input grid S_in and output grid S_out
// (the same grid for warp, any grid for sample):
//   x (warp's input, unwarp's output)        : (B, N, M_in),  M_in = prod(S_in)
//   y (warp's output, unwarp's input), grad_y : (B, N, M_out), M_out = prod(S_out)
//   eps, grad_eps                             : (B, D, M_out)
// eps[b, k, v] is the offset of output v along spatial axis k (`relative`: position v + eps)
// or its absolute coordinate (not `relative`: position eps).
//
// The interpolation kernel phi is not part of this file.  The build appends the
// source printed by warptheory.kernels.Kernel.c_source("wt_phi"), which defines
//   WT_HD inline double wt_phi_value(double t);       // phi(t), support [-1, 1]
//   WT_HD inline double wt_phi_derivative(double t);  // phi'(t+), the RIGHT derivative
// The forward declarations below let that source come after this header.
//
// Conventions (identical to warptheory/engines/reference.py):
//   * the sample position of output v is p = v + eps[b,:,v] (or eps[b,:,v]), formed in double;
//   * along each axis only the taps floor(p) and floor(p) + 1 carry weight, with
//     arguments t = frac(p) and frac(p) - 1, frac(p) = p - floor(p) (exact);
//   * padding: zeros (tap outside the lattice is dropped), periodic (index mod size),
//     border (index clamped);
//   * a non-finite position is undefined: a gather at it (warp output, every
//     grad_eps, unwarp grad_x) is NaN; a scatter from it (warp grad_x, unwarp
//     output) contributes nothing;
//   * every sum is accumulated in double and rounded once to the array dtype.
#ifndef WARPTHEORY_WARP_CUH
#define WARPTHEORY_WARP_CUH

#ifndef WT_HD
#ifdef __CUDACC__
#define WT_HD __host__ __device__
#else
#define WT_HD
#endif
#endif

// Loops over axes and corners have compile-time trip counts; unrolling them lets the
// GPU keep the per-axis taps in registers instead of local memory.
#ifdef __CUDACC__
#define WT_UNROLL _Pragma("unroll")
#else
#define WT_UNROLL
#endif

#ifndef __CUDACC_RTC__
// NVRTC has the math functions built in and no host headers; nvcc and g++ need them.
#include <math.h>
#include <limits>
#endif

#ifndef M_PI
// Kernel.c_source prints M_PI for the trigonometric kernels; strict C++/NVRTC lack it.
#define M_PI 3.14159265358979323846
#endif

WT_HD inline double wt_phi_value(double t);
WT_HD inline double wt_phi_derivative(double t);

enum WtPadding { WT_PAD_ZEROS = 0, WT_PAD_PERIODIC = 1, WT_PAD_BORDER = 2 };

// Marks a scatter entry that lands nowhere (outside the lattice under zeros padding,
// or from a non-finite position).
#define WT_NO_TARGET (-1LL)

WT_HD inline bool wt_isfinite(double value) {
    // Portable across NVRTC, nvcc and g++ without <cmath>'s isfinite overload set;
    // NaN compares false and +-inf exceeds the largest finite double.
    return fabs(value) <= 1.7976931348623157e308;
}

WT_HD inline double wt_nan() {
#ifdef __CUDA_ARCH__
    return __longlong_as_double(0x7ff8000000000000LL);
#else
    return std::numeric_limits<double>::quiet_NaN();
#endif
}

template <int D>
struct WtGeometry {
    long long size[D];    // spatial sizes S_k
    long long stride[D];  // C-order strides of the flattened spatial index
    long long count;      // M = prod(S)
};

// Sizes beyond the first D are ignored, so one kernel signature serves d = 1, 2, 3.
template <int D>
WT_HD inline WtGeometry<D> wt_make_geometry(long long s0, long long s1, long long s2) {
    const long long sizes[3] = {s0, s1, s2};
    WtGeometry<D> g;
    long long stride = 1;
    WT_UNROLL
    for (int k = D - 1; k >= 0; --k) {
        g.size[k] = sizes[k];
        g.stride[k] = stride;
        stride *= sizes[k];
    }
    g.count = stride;
    return g;
}

// Lattice index of the integer-valued, finite coordinate `lattice` under `padding`,
// or WT_NO_TARGET when it falls outside under zeros padding.  Works for any finite
// double (|lattice| up to 1e308): comparisons happen before any integer conversion.
WT_HD inline long long wt_map_index(double lattice, long long size, int padding) {
    if (padding == WT_PAD_PERIODIC) {
        double r = fmod(lattice, (double)size);  // exact for every double
        if (r < 0.0) r += (double)size;
        long long i = (long long)r;
        return i >= size ? i - size : i;
    }
    if (lattice < 0.0) return padding == WT_PAD_BORDER ? 0 : WT_NO_TARGET;
    if (lattice > (double)(size - 1)) return padding == WT_PAD_BORDER ? size - 1 : WT_NO_TARGET;
    return (long long)lattice;
}

// The two taps of one axis: tap 0 at floor(p), tap 1 at floor(p) + 1.
struct WtAxisTaps {
    long long index[2];  // mapped lattice index, WT_NO_TARGET when dropped
    double weight[2];    // phi(frac), phi(frac - 1)
    double slope[2];     // phi'(frac+), phi'((frac - 1)+)
};

// Fills `taps` for the sample position `p` along an axis of length `size`.
// Returns false (and leaves `taps` unspecified) when p is not finite.
WT_HD inline bool wt_axis_taps(double p, long long size, int padding, bool want_slope, WtAxisTaps& taps) {
    if (!wt_isfinite(p)) return false;
    const double base = floor(p);
    const double frac = p - base;  // exact: p and floor(p) share an exponent range
    taps.index[0] = wt_map_index(base, size, padding);
    if (padding == WT_PAD_PERIODIC) {
        // base + 1 is not representable beyond 2^53; step in index space instead.
        taps.index[1] = taps.index[0] + 1 == size ? 0 : taps.index[0] + 1;
    } else {
        taps.index[1] = wt_map_index(base + 1.0, size, padding);
    }
    taps.weight[0] = wt_phi_value(frac);
    taps.weight[1] = wt_phi_value(frac - 1.0);
    if (want_slope) {
        taps.slope[0] = wt_phi_derivative(frac);
        taps.slope[1] = wt_phi_derivative(frac - 1.0);
    }
    return true;
}

// The two grids of a plan and how eps gives the positions.
template <int D>
struct WtPlan {
    WtGeometry<D> in;   // the sampled lattice (the taps index it)
    WtGeometry<D> out;  // the output grid (one position per output)
    bool relative;      // position v + eps (warp) or eps (sample)
};

template <int D>
WT_HD inline WtPlan<D> wt_make_plan(long long i0, long long i1, long long i2, long long o0, long long o1,
                                    long long o2, int relative) {
    WtPlan<D> plan;
    plan.in = wt_make_geometry<D>(i0, i1, i2);
    plan.out = wt_make_geometry<D>(o0, o1, o2);
    plan.relative = relative != 0;
    return plan;
}

// Taps of every axis for output (batch b, flat output position v).  `eps_batch` points
// at eps[b, 0, 0].  Returns false when any axis has a non-finite position.
template <typename T, int D>
WT_HD inline bool wt_output_taps(const T* eps_batch, const WtPlan<D>& plan, long long v, int padding,
                                 bool want_slope, WtAxisTaps* taps) {
    bool finite = true;
    WT_UNROLL
    for (int k = 0; k < D; ++k) {
        const double e = (double)eps_batch[k * plan.out.count + v];
        const double p = plan.relative ? (double)((v / plan.out.stride[k]) % plan.out.size[k]) + e : e;
        finite = wt_axis_taps(p, plan.in.size[k], padding, want_slope, taps[k]) && finite;
    }
    return finite;
}

// Corner `corner` of the 2^D neighbours; bit (D - 1 - k) picks the tap of axis k, so
// increasing corner numbers run through the neighbours in C (lexicographic) order.
// Returns false when the corner is dropped (zeros padding); otherwise sets the flat
// lattice offset and the weight prod_k phi(t_k), multiplied in axis order.
template <int D>
WT_HD inline bool wt_corner(const WtAxisTaps* taps, const WtGeometry<D>& g, int corner, long long& offset,
                            double& weight) {
    offset = 0;
    weight = 1.0;
    WT_UNROLL
    for (int k = 0; k < D; ++k) {
        const int tap = (corner >> (D - 1 - k)) & 1;
        const long long i = taps[k].index[tap];
        if (i == WT_NO_TARGET) return false;
        offset += i * g.stride[k];
        weight *= taps[k].weight[tap];
    }
    return true;
}

// prod_{k != axis} phi(t_k) at a corner, in axis order: the factor that multiplies
// phi'(t_axis) in eq 4 / eq 51.
template <int D>
WT_HD inline double wt_corner_others(const WtAxisTaps* taps, int corner, int axis) {
    double w = 1.0;
    WT_UNROLL
    for (int k = 0; k < D; ++k) {
        if (k != axis) w *= taps[k].weight[(corner >> (D - 1 - k)) & 1];
    }
    return w;
}

// The slope that multiplies a tap's weighted sum `inner`: phi' itself, except that an
// infinite slope (sqrt_tri at t = -1) meeting a zero sum gives 0 (0 * inf := 0: that tap's
// weight does not move with eps), as in the reference's factorised form.
WT_HD inline double wt_slope_factor(double slope, double inner) {
    return (inner == 0.0 && !wt_isfinite(slope)) ? 0.0 : slope;
}

// ---------------------------------------------------------------------------------
// Gather (warp forward, eq 2; unwarp grad_x, eq 50):
//   out[b,n,v] = sum_corners w(v, c) src[b,n,u(v, c)]
// for channels n in [n_begin, n_end).  The taps are computed once per output and
// reused across channels.
template <typename T, int D>
WT_HD inline void wt_gather_output(const T* src, const T* eps, T* out, long long b, long long v, long long channels,
                                   long long n_begin, long long n_end, const WtPlan<D>& plan, int padding) {
    const long long M = plan.out.count;
    WtAxisTaps taps[D];
    if (!wt_output_taps<T, D>(eps + b * D * M, plan, v, padding, false, taps)) {
        for (long long n = n_begin; n < n_end; ++n) out[(b * channels + n) * M + v] = (T)wt_nan();
        return;
    }
    constexpr int C = 1 << D;
    long long offset[C];
    double weight[C];
    bool inside[C];
    WT_UNROLL
    for (int c = 0; c < C; ++c) inside[c] = wt_corner<D>(taps, plan.in, c, offset[c], weight[c]);
    for (long long n = n_begin; n < n_end; ++n) {
        const T* s = src + (b * channels + n) * plan.in.count;
        double acc = 0.0;
        WT_UNROLL
        for (int c = 0; c < C; ++c)
            if (inside[c]) acc += weight[c] * (double)s[offset[c]];
        out[(b * channels + n) * M + v] = (T)acc;
    }
}

// ---------------------------------------------------------------------------------
// Position derivative (warp grad_eps, eq 4 with outer = grad_y, src = x; unwarp
// grad_eps, eq 51 with outer = x, src = grad_y):
//   out[b,i,v] = sum_n outer[b,n,v] sum_corners phi'_i prod_{k!=i} phi_k src[b,n,u(v, c)]
//              = sum_{a=0,1} phi'(t_{i,a}) sum_{corners c with tap a on axis i}
//                    prod_{k!=i} phi_k (sum_n outer[b,n,v] src[b,n,u(v, c)])
// factorised like the reference, so each slope multiplies one finite sum.
template <typename T, int D>
WT_HD inline void wt_position_derivative_output(const T* outer, const T* src, const T* eps, T* out, long long b,
                                                long long v, long long channels, const WtPlan<D>& plan,
                                                int padding) {
    const long long M = plan.out.count;
    WtAxisTaps taps[D];
    if (!wt_output_taps<T, D>(eps + b * D * M, plan, v, padding, true, taps)) {
        WT_UNROLL
        for (int i = 0; i < D; ++i) out[(b * D + i) * M + v] = (T)wt_nan();
        return;
    }
    constexpr int C = 1 << D;
    long long offset[C];
    bool inside[C];
    WT_UNROLL
    for (int c = 0; c < C; ++c) {
        double unused_weight;
        inside[c] = wt_corner<D>(taps, plan.in, c, offset[c], unused_weight);
    }
    // Reduce over channels first, per corner (a dropped corner reads 0).
    double dot[C];
    WT_UNROLL
    for (int c = 0; c < C; ++c) dot[c] = 0.0;
    for (long long n = 0; n < channels; ++n) {
        const T* s = src + (b * channels + n) * plan.in.count;
        const double o = (double)outer[(b * channels + n) * M + v];
        WT_UNROLL
        for (int c = 0; c < C; ++c)
            if (inside[c]) dot[c] += o * (double)s[offset[c]];
    }
    double acc[D];
    WT_UNROLL
    for (int i = 0; i < D; ++i) {
        double inner[2] = {0.0, 0.0};
        WT_UNROLL
        for (int c = 0; c < C; ++c) inner[(c >> (D - 1 - i)) & 1] += wt_corner_others<D>(taps, c, i) * dot[c];
        acc[i] = wt_slope_factor(taps[i].slope[0], inner[0]) * inner[0] +
                 wt_slope_factor(taps[i].slope[1], inner[1]) * inner[1];
    }
    WT_UNROLL
    for (int i = 0; i < D; ++i) out[(b * D + i) * M + v] = (T)acc[i];
}

// ---------------------------------------------------------------------------------
// Scatter (warp grad_x, eq 3; unwarp forward, eq 49) without atomics, in three passes:
//   out[b,n,u] = sum over entries (v, c) with target u of w(v, c) src[b,n,v]
//
// Pass 1 (wt_scatter_entries, per source v): the 2^D entries e = v * 2^D + c, each a
//   target lattice offset (WT_NO_TARGET when dropped) and a weight.
// Pass 2 (not here; host: stable counting sort, GPU: radix sort of unique 64-bit keys
//   (b, target, e)): the entries grouped by target, ascending e within a target.
// Pass 3 (wt_gather_segment, per target u): the sum over that target's entries in
//   the sorted order.
// Every output is therefore the same sum in the same order (ascending v, then c)
// on every run, every thread count, the host and the GPU: bitwise deterministic.

// Pass 1: `target` and `weight` receive 2^D values for source v of batch b.
template <typename T, int D>
WT_HD inline void wt_scatter_entries(const T* eps, long long b, long long v, const WtPlan<D>& plan, int padding,
                                     long long* target, double* weight) {
    constexpr int C = 1 << D;
    WtAxisTaps taps[D];
    if (!wt_output_taps<T, D>(eps + b * D * plan.out.count, plan, v, padding, false, taps)) {
        WT_UNROLL
        for (int c = 0; c < C; ++c) {
            target[c] = WT_NO_TARGET;
            weight[c] = 0.0;
        }
        return;
    }
    WT_UNROLL
    for (int c = 0; c < C; ++c) {
        long long offset;
        double w;
        const bool inside = wt_corner<D>(taps, plan.in, c, offset, w);
        target[c] = inside ? offset : WT_NO_TARGET;
        weight[c] = inside ? w : 0.0;
    }
}

// Pass 3: out[b,n,u] (u on the input grid, `count` points) for channels [n_begin, n_end)
// from the sorted entries in [start, end): `source` holds each entry's source position v
// (on the output grid, `source_count` points), `weight` its weight.
template <typename T, typename Index>
WT_HD inline void wt_gather_segment(const T* src, T* out, long long b, long long u, long long channels,
                                    long long count, long long source_count, long long n_begin, long long n_end,
                                    const Index* source, const double* weight, long long start, long long end) {
    for (long long n = n_begin; n < n_end; ++n) {
        const T* s = src + (b * channels + n) * source_count;
        double acc = 0.0;
        for (long long j = start; j < end; ++j) acc += weight[j] * (double)s[source[j]];
        out[(b * channels + n) * count + u] = (T)acc;
    }
}

// First index j in [lo, hi) with keys[j] >= key (keys ascending); hi if none.
// Used on the GPU to find each target's segment without a histogram (no atomics).
WT_HD inline long long wt_lower_bound(const long long* keys, long long lo, long long hi, long long key) {
    while (lo < hi) {
        const long long mid = lo + (hi - lo) / 2;
        if (keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

#endif  // WARPTHEORY_WARP_CUH
