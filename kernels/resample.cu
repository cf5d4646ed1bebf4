// The fused image kernels: for every view of a batch, antialiased bilinear resize of a crop
// window of a decoded RGB image, horizontal flip, conversion to the output dtype with
// normalization, in NCHW or channels-last order; `program_*` adds the view's photometric
// steps (colour jitter, grayscale, solarize, blur) and its erased rectangle. One launch per
// batch and output.
//
// The per-pixel math has a CPU twin, `src/transform/resample.rs` and
// `src/transform/photometric.rs`, which the CPU tests pin against torchvision; a GPU run only
// has to agree with it. Keep them in step: same operations in the same order (the build
// passes --fmad=false so NVRTC does not fuse them).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

// NVRTC has no <stdint.h>; these are the only fixed-width types used.
typedef unsigned char uint8_t;
typedef unsigned int uint32_t;

// Mirrors `ViewParams` in src/transform/resample.rs (repr(C), 96 bytes).
struct ViewParams {
    unsigned long long src;           // device pointer: the image (RGB pixels, or its planes)
    uint32_t src_pitch;               // bytes between RGB rows
    uint32_t src_width, src_height;   // the window the filter reads, in pixels
    float box_x, box_y, box_w, box_h; // the region of the window mapped onto the paste rectangle
    uint32_t paste_x, paste_y, paste_w, paste_h;  // where it lands in the view; the rest is 0
    uint32_t flip;                    // mirror the view's columns
    uint32_t bicubic;                 // 1: cubic filter, 0: bilinear
    uint32_t antialias;               // 1: widened when downscaling, cubic a = -0.5; 0: a = -0.75
    uint32_t yuv420;                  // 1: src holds YUV 4:2:0 planes, converted as read
    uint32_t window_x, window_y;      // the window's first pixel in the image
    uint32_t image_width, image_height;
    uint32_t unused;
    unsigned long long dst_offset;    // element offset of the view in the output tensor
};

// Decode-free images (src/decode/yuv420.rs, whose `chroma_taps`, `rgb_at` and `ycc_to_rgb`
// these mirror): luma `2cw x 2ch`, then Cb and Cr `cw x ch`, cw = ceil(width / 2). Chroma
// interpolated bilinearly at the luma position, then JFIF's matrix.
__device__ __forceinline__ void chroma_taps(uint32_t i, uint32_t len, uint32_t& a, uint32_t& b,
                                            float& w) {
    float c = (float)i * 0.5f - 0.25f;
    float first = floorf(c);
    w = c - first;
    int last = (int)len - 1;
    int f = (int)first;
    a = (uint32_t)(f < 0 ? 0 : (f > last ? last : f));
    b = (uint32_t)(f + 1 < 0 ? 0 : (f + 1 > last ? last : f + 1));
}

__device__ __forceinline__ float level(float v) {
    v = v + 0.5f;
    return truncf(v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
}

__device__ __forceinline__ void rgb_at(const uint8_t* planes, uint32_t width, uint32_t height,
                                       uint32_t x, uint32_t y, float rgb[3]) {
    uint32_t cw = (width + 1) / 2, ch = (height + 1) / 2;
    uint32_t r0, r1, c0, c1;
    float fy, fx;
    chroma_taps(y, ch, r0, r1, fy);
    chroma_taps(x, cw, c0, c1, fx);
    float chroma[2];
    for (int p = 0; p < 2; ++p) {
        const uint8_t* plane = planes + (size_t)4 * cw * ch + (size_t)p * cw * ch;
        float left = (1.0f - fy) * (float)plane[r0 * cw + c0] + fy * (float)plane[r1 * cw + c0];
        float right = (1.0f - fy) * (float)plane[r0 * cw + c1] + fy * (float)plane[r1 * cw + c1];
        chroma[p] = (1.0f - fx) * left + fx * right;
    }
    float l = (float)planes[(size_t)y * 2 * cw + x];
    float cb = chroma[0] - 128.0f, cr = chroma[1] - 128.0f;
    rgb[0] = level(l + 1.402f * cr);
    rgb[1] = level(l - 0.344136f * cb - 0.714136f * cr);
    rgb[2] = level(l + 1.772f * cb);
}

// One output position along one axis: the input taps it reads and their weights (PIL's and
// torchvision's filters: bilinear's triangle or bicubic's cubic, widened by the downscale
// factor when antialiased).
struct Taps {
    int first;
    int count;
    float center;
    float ss;
    float total;
    bool bicubic;
    float a;
};

__device__ __forceinline__ float filter(float x, bool bicubic, float a) {
    x = fabsf(x);
    if (!bicubic) return x < 1.0f ? 1.0f - x : 0.0f;
    if (x < 1.0f) return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
    if (x < 2.0f) return (((x - 5.0f) * x + 8.0f) * x - 4.0f) * a;
    return 0.0f;
}

__device__ __forceinline__ Taps taps(float box_start, float box_len, uint32_t out_len,
                                     uint32_t in_len, uint32_t i, bool bicubic, bool antialias) {
    Taps t;
    t.bicubic = bicubic;
    t.a = antialias ? -0.5f : -0.75f;
    float scale = box_len / (float)out_len;
    float filterscale = antialias && scale > 1.0f ? scale : 1.0f;
    float support = (bicubic ? 2.0f : 1.0f) * filterscale;
    t.center = box_start + ((float)i + 0.5f) * scale;
    t.ss = 1.0f / filterscale;
    int lo = (int)floorf(t.center - support + 0.5f);
    int hi = (int)floorf(t.center + support + 0.5f);
    t.first = lo > 0 ? lo : 0;
    int end = hi < (int)in_len ? hi : (int)in_len;
    t.count = end > t.first ? end - t.first : 0;
    t.total = 0.0f;
    for (int j = 0; j < t.count; ++j) {
        t.total = t.total + filter((((float)(t.first + j) - t.center) + 0.5f) * t.ss, bicubic, t.a);
    }
    return t;
}

__device__ __forceinline__ float weight(const Taps& t, int j) {
    float w = filter((((float)(t.first + j) - t.center) + 0.5f) * t.ss, t.bicubic, t.a);
    return t.total != 0.0f ? w / t.total : 0.0f;
}

// The resampled pixel (x, y) of the paste rectangle, rounded to uint8 as torchvision's uint8
// resize does, per channel.
__device__ __forceinline__ void resample_pixel(const ViewParams& v, uint32_t x, uint32_t y,
                                               float rgb[3]) {
    Taps tx = taps(v.box_x, v.box_w, v.paste_w, v.src_width, x, v.bicubic != 0, v.antialias != 0);
    Taps ty = taps(v.box_y, v.box_h, v.paste_h, v.src_height, y, v.bicubic != 0, v.antialias != 0);
    const uint8_t* src = reinterpret_cast<const uint8_t*>(v.src);
    float acc[3] = {0.0f, 0.0f, 0.0f};
    for (int ky = 0; ky < ty.count; ++ky) {
        uint32_t sy = v.window_y + (uint32_t)(ty.first + ky);
        uint32_t sx = v.window_x + (uint32_t)tx.first;
        float sum[3] = {0.0f, 0.0f, 0.0f};
        if (v.yuv420) {
            for (int kx = 0; kx < tx.count; ++kx) {
                float wx = weight(tx, kx);
                float px[3];
                rgb_at(src, v.image_width, v.image_height, sx + (uint32_t)kx, sy, px);
                sum[0] = sum[0] + wx * px[0];
                sum[1] = sum[1] + wx * px[1];
                sum[2] = sum[2] + wx * px[2];
            }
        } else {
            const uint8_t* row = src + (size_t)sy * v.src_pitch + (size_t)sx * 3;
            for (int kx = 0; kx < tx.count; ++kx) {
                float wx = weight(tx, kx);
                sum[0] = sum[0] + wx * (float)row[3 * kx + 0];
                sum[1] = sum[1] + wx * (float)row[3 * kx + 1];
                sum[2] = sum[2] + wx * (float)row[3 * kx + 2];
            }
        }
        if (ty.bicubic) {
            // As PIL and torchvision's uint8 path: the horizontal pass rounded and clamped to
            // 8 bits before the vertical one (the cubic overshoots at edges).
            for (int c = 0; c < 3; ++c) {
                float r = floorf(sum[c] + 0.5f);
                sum[c] = r < 0.0f ? 0.0f : (r > 255.0f ? 255.0f : r);
            }
        }
        float wy = weight(ty, ky);
        acc[0] = acc[0] + wy * sum[0];
        acc[1] = acc[1] + wy * sum[1];
        acc[2] = acc[2] + wy * sum[2];
    }
    for (int c = 0; c < 3; ++c) {
        float r = floorf(acc[c] + 0.5f);
        rgb[c] = r < 0.0f ? 0.0f : (r > 255.0f ? 255.0f : r);
    }
}

struct Convert {
    float scale;  // float32(1 / 255): torchvision's ToDtype(scale=True)
    float mean[3];
    float std[3];
};

__device__ __forceinline__ float normalized(const Convert& k, float u, int c) {
    return (u * k.scale - k.mean[c]) / k.std[c];
}

template <typename T> __device__ __forceinline__ T cast_out(const Convert& k, float u, int c);
template <> __device__ __forceinline__ uint8_t cast_out<uint8_t>(const Convert&, float u, int) {
    return (uint8_t)u;
}
template <> __device__ __forceinline__ float cast_out<float>(const Convert& k, float u, int c) {
    return normalized(k, u, c);
}
template <> __device__ __forceinline__ __half cast_out<__half>(const Convert& k, float u, int c) {
    return __float2half_rn(normalized(k, u, c));
}
template <>
__device__ __forceinline__ __nv_bfloat16 cast_out<__nv_bfloat16>(const Convert& k, float u,
                                                                 int c) {
    return __float2bfloat16_rn(normalized(k, u, c));
}

// Grid: x and y cover the output view (one thread per pixel, all three channels), z walks
// the views of the batch.
template <typename T>
__device__ void resample_views(const ViewParams* __restrict__ views, uint32_t n_views,
                               T* __restrict__ out, uint32_t out_h, uint32_t out_w,
                               uint32_t channels_last, Convert k) {
    uint32_t x = blockIdx.x * blockDim.x + threadIdx.x;
    uint32_t y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    for (uint32_t n = blockIdx.z; n < n_views; n += gridDim.z) {
        const ViewParams v = views[n];
        float rgb[3] = {0.0f, 0.0f, 0.0f};
        if (x >= v.paste_x && x < v.paste_x + v.paste_w && y >= v.paste_y &&
            y < v.paste_y + v.paste_h) {
            resample_pixel(v, x - v.paste_x, y - v.paste_y, rgb);
        }
        uint32_t xo = v.flip ? out_w - 1 - x : x;
        T* dst = out + v.dst_offset;
        size_t plane = (size_t)out_h * out_w;
        for (int c = 0; c < 3; ++c) {
            size_t at = channels_last ? ((size_t)y * out_w + xo) * 3 + c
                                      : c * plane + (size_t)y * out_w + xo;
            dst[at] = cast_out<T>(k, rgb[c], c);
        }
    }
}

#define RESAMPLE_KERNEL(NAME, T)                                                            \
    extern "C" __global__ void NAME(const ViewParams* __restrict__ views, uint32_t n_views,  \
                                    T* __restrict__ out, uint32_t out_h, uint32_t out_w,     \
                                    uint32_t channels_last, Convert k) {                     \
        resample_views<T>(views, n_views, out, out_h, out_w, channels_last, k);              \
    }

RESAMPLE_KERNEL(resample_uint8, uint8_t)
RESAMPLE_KERNEL(resample_float16, __half)
RESAMPLE_KERNEL(resample_bfloat16, __nv_bfloat16)
RESAMPLE_KERNEL(resample_float32, float)

// ---- Photometric steps and erasing: `program_*` ----

// Mirrors `ColorStep` in src/transform/photometric.rs (24 bytes); kinds as in its `step`.
struct ColorStep {
    uint32_t kind;
    float a, b;
    uint32_t taps_x, taps_y, weights;
};
enum { BRIGHTNESS = 0, CONTRAST = 1, SATURATION = 2, HUE = 3, GRAYSCALE = 4, SOLARIZE = 5,
       BLUR = 6 };

// Mirrors `ViewProgram` in src/transform/program.rs (40 bytes): the view's steps, its erased
// rectangle (in output pixels, before any flip that comes after the erasing) and the key of
// its erasing noise.
struct ViewProgram {
    uint32_t first_step, n_steps;
    uint32_t erase;
    uint32_t erase_top, erase_left, erase_h, erase_w;
    uint32_t unused;
    unsigned long long noise;
};

// Mirrors `EraseValue` in src/transform/program.rs: the pipeline's erasing value.
struct EraseValue {
    float value[3];
    uint32_t output_units;  // the value is an output element, else a 0..255 pixel value
    uint32_t before_flip;   // the rectangle is mirrored with a flipped view
    uint32_t random;        // value="random": the view's noise instead of `value`
};

// `erase_noise` in photometric.rs: element i of a view's noise, standard normal (Box-Muller
// in double on two 53-bit uniforms from SplitMix64 over `key` at counters 2i + 1, 2i + 2).
__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
__device__ __forceinline__ float erase_noise(unsigned long long key, unsigned long long i) {
    const unsigned long long golden = 0x9e3779b97f4a7c15ull;
    const double unit = 1.0 / 9007199254740992.0;  // 2^-53
    double u1 = (double)((mix64(key + (2 * i + 1) * golden) >> 11) + 1) * unit;
    double u2 = (double)(mix64(key + (2 * i + 2) * golden) >> 11) * unit;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

__device__ __forceinline__ float clamp255(float x) {
    return x < 0.0f ? 0.0f : (x > 255.0f ? 255.0f : x);
}
__device__ __forceinline__ float clamp1(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
__device__ __forceinline__ float to_u8(float x) { return truncf(clamp255(x)); }
__device__ __forceinline__ float gray(const float p[3]) {
    return p[0] * 0.2989f + p[1] * 0.587f + p[2] * 0.114f;
}

__device__ __forceinline__ void hue(float p[3], float factor) {
    const float k = (float)(1.0 / 255.0);
    float r = p[0] * k, g = p[1] * k, b = p[2] * k;
    float maxc = fmaxf(fmaxf(r, g), b);
    float minc = fminf(fminf(r, g), b);
    bool eqc = maxc == minc;
    float range = maxc - minc;
    float s = range / (eqc ? 1.0f : maxc);
    float divisor = eqc ? 1.0f : range;
    float rc = (maxc - r) / divisor, gc = (maxc - g) / divisor, bc = (maxc - b) / divisor;
    bool neq_r = maxc != r, eq_g = maxc == g;
    float hg = ((rc + 2.0f) - bc) * ((eq_g && neq_r) ? 1.0f : 0.0f);
    float hr = (bc - gc) * (!neq_r ? 1.0f : 0.0f);
    float hb = ((gc + 4.0f) - rc) * ((neq_r && !eq_g) ? 1.0f : 0.0f);
    float h = ((hr + hg) + hb) * (float)(1.0 / 6.0) + 1.0f;
    h = fmodf(h, 1.0f);
    h = fmodf(h + factor, 1.0f);
    if (h < 0.0f) h = h + 1.0f;
    float v = maxc;
    float h6 = h * 6.0f;
    float i = floorf(h6);
    float f = h6 - i;
    float sxf = s * f;
    float one_minus_s = 1.0f - s;
    float q = clamp1((1.0f - sxf) * v);
    float t = clamp1((sxf + one_minus_s) * v);
    float pv = clamp1(one_minus_s * v);
    int sector = ((int)i % 6 + 6) % 6;
    float o[3];
    switch (sector) {
        case 0: o[0] = v; o[1] = t; o[2] = pv; break;
        case 1: o[0] = q; o[1] = v; o[2] = pv; break;
        case 2: o[0] = pv; o[1] = v; o[2] = t; break;
        case 3: o[0] = pv; o[1] = q; o[2] = v; break;
        case 4: o[0] = t; o[1] = pv; o[2] = v; break;
        default: o[0] = v; o[1] = pv; o[2] = q; break;
    }
    const float up = (float)(255.0 + 1.0 - 1e-3);
    for (int c = 0; c < 3; ++c) p[c] = truncf(o[c] * up);
}

// `pointwise` in photometric.rs.
__device__ __forceinline__ void pointwise(const ColorStep& s, float p[3], float mean) {
    switch (s.kind) {
        case BRIGHTNESS:
            for (int c = 0; c < 3; ++c) p[c] = to_u8(p[c] * s.a);
            break;
        case CONTRAST:
            for (int c = 0; c < 3; ++c) p[c] = to_u8(p[c] * s.a + mean * s.b);
            break;
        case SATURATION: {
            float g = floorf(gray(p));
            for (int c = 0; c < 3; ++c) p[c] = to_u8(p[c] * s.a + g * s.b);
            break;
        }
        case HUE:
            hue(p, s.a);
            break;
        case GRAYSCALE: {
            float g = to_u8(gray(p));
            p[0] = g; p[1] = g; p[2] = g;
            break;
        }
        case SOLARIZE:
            for (int c = 0; c < 3; ++c) p[c] = p[c] >= s.a ? 255.0f - p[c] : p[c];
            break;
    }
}

__device__ __forceinline__ bool needs_whole_view(const ColorStep& s) {
    return s.kind == BLUR || s.kind == CONTRAST;
}

__device__ __forceinline__ int reflect(int i, int n) {
    i = i < 0 ? -i : i;
    return i >= n ? 2 * (n - 1) - i : i;
}

// `grey_mean` in photometric.rs over the block's view: integer sum of the floored grey values,
// divided in float32. Every thread gets the mean.
__device__ float grey_mean(const uint8_t* px, uint32_t n_pixels) {
    __shared__ unsigned long long warp_sums[32];
    __shared__ float mean;
    unsigned long long sum = 0;
    for (uint32_t i = threadIdx.x; i < n_pixels; i += blockDim.x) {
        float p[3] = {(float)px[3 * i], (float)px[3 * i + 1], (float)px[3 * i + 2]};
        sum += (unsigned long long)floorf(gray(p));
    }
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
    if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long total = 0;
        for (uint32_t w = 0; w < (blockDim.x + 31) / 32; ++w) total += warp_sums[w];
        mean = __ull2float_rn(total) / __uint2float_rn(n_pixels);
    }
    __syncthreads();
    return mean;
}

// `blur` in photometric.rs on the block's view: rows into `tmp` (float32), then columns back
// into `px`, rounded half to even.
__device__ void blur(uint8_t* px, float* tmp, uint32_t h, uint32_t w, const ColorStep& s,
                     const float* weights) {
    const float* kx = weights + s.weights;
    const float* ky = kx + s.taps_x;
    int rx = (int)s.taps_x / 2, ry = (int)s.taps_y / 2;
    for (uint32_t i = threadIdx.x; i < h * w; i += blockDim.x) {
        uint32_t y = i / w, x = i % w;
        float acc[3] = {0.0f, 0.0f, 0.0f};
        for (uint32_t k = 0; k < s.taps_x; ++k) {
            int sx = reflect((int)x + (int)k - rx, (int)w);
            const uint8_t* q = px + ((size_t)y * w + sx) * 3;
            for (int c = 0; c < 3; ++c) acc[c] = acc[c] + kx[k] * (float)q[c];
        }
        for (int c = 0; c < 3; ++c) tmp[(size_t)i * 3 + c] = acc[c];
    }
    __syncthreads();
    for (uint32_t i = threadIdx.x; i < h * w; i += blockDim.x) {
        uint32_t y = i / w, x = i % w;
        float acc[3] = {0.0f, 0.0f, 0.0f};
        for (uint32_t k = 0; k < s.taps_y; ++k) {
            int sy = reflect((int)y + (int)k - ry, (int)h);
            const float* q = tmp + ((size_t)sy * w + x) * 3;
            for (int c = 0; c < 3; ++c) acc[c] = acc[c] + ky[k] * q[c];
        }
        for (int c = 0; c < 3; ++c) px[(size_t)i * 3 + c] = (uint8_t)clamp255(rintf(acc[c]));
    }
    __syncthreads();
}

// A value already in output units as an output element (`from_value` in the twin).
template <typename T> __device__ __forceinline__ T erase_out(float x);
template <> __device__ __forceinline__ uint8_t erase_out<uint8_t>(float x) {
    return (uint8_t)clamp255(x);
}
template <> __device__ __forceinline__ float erase_out<float>(float x) { return x; }
template <> __device__ __forceinline__ __half erase_out<__half>(float x) {
    return __float2half_rn(x);
}
template <> __device__ __forceinline__ __nv_bfloat16 erase_out<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// One block per view at a time (each block owns one view's slot of `pixels` and `blurred`): the
// view resampled, then its steps in runs, each run one pass over the pixels; a contrast starts
// a run after the mean of the pixels before it, a blur is its own two passes. The last run
// writes the output (flipped, erased, converted) instead of the slot.
template <typename T>
__device__ void program_views(const ViewParams* __restrict__ views,
                              const ViewProgram* __restrict__ programs,
                              const ColorStep* __restrict__ steps,
                              const float* __restrict__ weights, uint32_t n_views,
                              uint8_t* __restrict__ pixels, float* __restrict__ blurred,
                              T* __restrict__ out, uint32_t out_h, uint32_t out_w,
                              uint32_t channels_last, Convert k, EraseValue e) {
    const uint32_t n_pixels = out_h * out_w;
    uint8_t* px = pixels + (size_t)blockIdx.x * n_pixels * 3;
    float* tmp = blurred ? blurred + (size_t)blockIdx.x * n_pixels * 3 : nullptr;
    for (uint32_t n = blockIdx.x; n < n_views; n += gridDim.x) {
        const ViewParams v = views[n];
        const ViewProgram prog = programs[n];
        const ColorStep* s = steps + prog.first_step;
        const uint32_t count = prog.n_steps;
        bool resampled = false;  // the slot holds the view as the steps so far left it
        uint32_t j = 0;
        for (;;) {
            if (resampled && j < count && s[j].kind == BLUR) {
                blur(px, tmp, out_h, out_w, s[j], weights);
                ++j;
                continue;
            }
            bool contrast = resampled && j < count && s[j].kind == CONTRAST;
            float mean = contrast ? grey_mean(px, n_pixels) : 0.0f;
            uint32_t end = contrast ? j + 1 : j;
            while (end < count && !needs_whole_view(s[end])) ++end;
            bool last = end == count;
            for (uint32_t i = threadIdx.x; i < n_pixels; i += blockDim.x) {
                uint32_t y = i / out_w, x = i % out_w;
                float p[3] = {0.0f, 0.0f, 0.0f};
                if (resampled) {
                    for (int c = 0; c < 3; ++c) p[c] = (float)px[(size_t)i * 3 + c];
                } else if (x >= v.paste_x && x < v.paste_x + v.paste_w && y >= v.paste_y &&
                           y < v.paste_y + v.paste_h) {
                    resample_pixel(v, x - v.paste_x, y - v.paste_y, p);
                }
                for (uint32_t m = j; m < end; ++m) pointwise(s[m], p, mean);
                if (!last) {
                    for (int c = 0; c < 3; ++c) px[(size_t)i * 3 + c] = (uint8_t)p[c];
                    continue;
                }
                uint32_t xo = v.flip ? out_w - 1 - x : x;
                bool mirrored = v.flip && e.before_flip;
                uint32_t left = prog.erase_left;
                if (mirrored) left = out_w - prog.erase_left - prog.erase_w;
                bool erased = prog.erase && y >= prog.erase_top &&
                              y < prog.erase_top + prog.erase_h && xo >= left &&
                              xo < left + prog.erase_w;
                uint32_t framed = mirrored ? out_w - 1 - xo : xo;  // x in the box's frame
                T* dst = out + v.dst_offset;
                for (int c = 0; c < 3; ++c) {
                    size_t at = channels_last ? ((size_t)y * out_w + xo) * 3 + c
                                              : c * (size_t)n_pixels + (size_t)y * out_w + xo;
                    if (!erased) {
                        dst[at] = cast_out<T>(k, p[c], c);
                    } else if (e.random) {
                        unsigned long long i =
                            ((unsigned long long)c * out_h + y) * out_w + framed;
                        dst[at] = erase_out<T>(erase_noise(prog.noise, i));
                    } else if (e.output_units) {
                        dst[at] = erase_out<T>(e.value[c]);
                    } else {
                        dst[at] = cast_out<T>(k, truncf(clamp255(e.value[c])), c);
                    }
                }
            }
            __syncthreads();
            if (last) break;
            resampled = true;
            j = end;
        }
    }
}

#define PROGRAM_KERNEL(NAME, T)                                                             \
    extern "C" __global__ void NAME(                                                        \
        const ViewParams* __restrict__ views, const ViewProgram* __restrict__ programs,    \
        const ColorStep* __restrict__ steps, const float* __restrict__ weights,            \
        uint32_t n_views, uint8_t* __restrict__ pixels, float* __restrict__ blurred,       \
        T* __restrict__ out, uint32_t out_h, uint32_t out_w, uint32_t channels_last,       \
        Convert k, EraseValue e) {                                                          \
        program_views<T>(views, programs, steps, weights, n_views, pixels, blurred, out,    \
                         out_h, out_w, channels_last, k, e);                                \
    }

PROGRAM_KERNEL(program_uint8, uint8_t)
PROGRAM_KERNEL(program_float16, __half)
PROGRAM_KERNEL(program_bfloat16, __nv_bfloat16)
PROGRAM_KERNEL(program_float32, float)
