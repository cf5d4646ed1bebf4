// The fused image kernel: for every view of a batch, antialiased bilinear resize of a crop
// window of a decoded RGB image, horizontal flip, conversion to the output dtype with
// normalization, in NCHW or channels-last order. One launch per batch and output.
//
// The per-pixel math has a CPU twin, `src/transform/resample.rs`, which the CPU tests pin
// against torchvision; a GPU run only has to agree with it. Keep the two in step: same
// operations in the same order (the build passes --fmad=false so NVRTC does not fuse them).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

// NVRTC has no <stdint.h>; these are the only fixed-width types used.
typedef unsigned char uint8_t;
typedef unsigned int uint32_t;

// Mirrors `ViewParams` in src/transform/resample.rs (repr(C), 64 bytes).
struct ViewParams {
    unsigned long long src;           // device pointer: first pixel of the window the filter reads
    uint32_t src_pitch;               // bytes between rows of the source
    uint32_t src_width, src_height;   // the window, in pixels (RGB, 3 bytes each)
    float box_x, box_y, box_w, box_h; // the region of the window mapped onto the paste rectangle
    uint32_t paste_x, paste_y, paste_w, paste_h;  // where it lands in the view; the rest is 0
    uint32_t flip;                    // mirror the view's columns
    unsigned long long dst_offset;    // element offset of the view in the output tensor
};

// One output position along one axis: the input taps it reads and their weights (PIL's and
// torchvision's antialiased bilinear: a triangle filter widened by the downscale factor).
struct Taps {
    int first;
    int count;
    float center;
    float ss;
    float total;
};

__device__ __forceinline__ float triangle(float x) {
    x = fabsf(x);
    return x < 1.0f ? 1.0f - x : 0.0f;
}

__device__ __forceinline__ Taps taps(float box_start, float box_len, uint32_t out_len,
                                     uint32_t in_len, uint32_t i) {
    Taps t;
    float scale = box_len / (float)out_len;
    float filterscale = scale > 1.0f ? scale : 1.0f;
    float support = filterscale;  // bilinear support (1) times filterscale
    t.center = box_start + ((float)i + 0.5f) * scale;
    t.ss = 1.0f / filterscale;
    int lo = (int)floorf(t.center - support + 0.5f);
    int hi = (int)floorf(t.center + support + 0.5f);
    t.first = lo > 0 ? lo : 0;
    int end = hi < (int)in_len ? hi : (int)in_len;
    t.count = end > t.first ? end - t.first : 0;
    t.total = 0.0f;
    for (int j = 0; j < t.count; ++j) {
        t.total = t.total + triangle((((float)(t.first + j) - t.center) + 0.5f) * t.ss);
    }
    return t;
}

__device__ __forceinline__ float weight(const Taps& t, int j) {
    float w = triangle((((float)(t.first + j) - t.center) + 0.5f) * t.ss);
    return t.total != 0.0f ? w / t.total : 0.0f;
}

// The resampled pixel (x, y) of the paste rectangle, rounded to uint8 as torchvision's uint8
// resize does, per channel.
__device__ __forceinline__ void resample_pixel(const ViewParams& v, uint32_t x, uint32_t y,
                                               float rgb[3]) {
    Taps tx = taps(v.box_x, v.box_w, v.paste_w, v.src_width, x);
    Taps ty = taps(v.box_y, v.box_h, v.paste_h, v.src_height, y);
    const uint8_t* src = reinterpret_cast<const uint8_t*>(v.src);
    float acc[3] = {0.0f, 0.0f, 0.0f};
    for (int ky = 0; ky < ty.count; ++ky) {
        const uint8_t* row = src + (size_t)(ty.first + ky) * v.src_pitch + (size_t)tx.first * 3;
        float sum[3] = {0.0f, 0.0f, 0.0f};
        for (int kx = 0; kx < tx.count; ++kx) {
            float wx = weight(tx, kx);
            sum[0] = sum[0] + wx * (float)row[3 * kx + 0];
            sum[1] = sum[1] + wx * (float)row[3 * kx + 1];
            sum[2] = sum[2] + wx * (float)row[3 * kx + 2];
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
