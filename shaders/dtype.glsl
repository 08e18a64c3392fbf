// twist shaders: the storage type of an op's data tensors (#include "dtype.glsl" after
// common.glsl). cmake/vulkan_shaders.cmake compiles a shader that includes it three times:
// <name> (TW_DTYPE 0, fp32), <name>_f16 (1) and <name>_bf16 (2); the host picks the one of the
// op's data type (backends/vulkan/vk_gpu16.c). Data buffers are declared with TW_T and touched
// only through TW_LD / TW_ST; arithmetic stays fp32 whatever the storage.
//
// Both 16-bit types are stored as uint16_t (GL_EXT_shader_16bit_storage, the device feature
// storageBuffer16BitAccess) and converted with integer operations: bf16 because Debian 12's
// glslang has no bfloat16 type (GL_EXT_bfloat16 needs glslang 15.3), f16 so that stores round
// to nearest even on every driver (an fp32 -> float16_t conversion's rounding is the driver's
// choice without VK_KHR_shader_float_controls' RTE mode). Loads are exact either way.
#ifndef TW_DTYPE_GLSL
#define TW_DTYPE_GLSL

#ifndef TW_DTYPE
#define TW_DTYPE 0
#endif

#if TW_DTYPE == 0
#define TW_T float
#define TW_LD(b, i) (b[i])
#define TW_ST(b, i, v) b[i] = (v)
#else
#extension GL_EXT_shader_16bit_storage : require
#define TW_T uint16_t

// fp32 -> f16 bits, round to nearest even; NaN stays NaN, overflow gives inf, subnormals kept
// (the same steps as twist/dtype.h's tw_f32_to_f16).
uint tw_f32_to_f16_bits(float value) {
    uint bits = floatBitsToUint(value);
    uint sign = (bits >> 16) & 0x8000u;
    uint magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return sign | 0x7e00u;
    if (magnitude >= 0x477ff000u) return sign | 0x7c00u;
    if (magnitude < 0x38800000u) {
        float shifted = uintBitsToFloat(magnitude) + 0.5;
        return sign | (floatBitsToUint(shifted) - 0x3f000000u);
    }
    return sign | ((magnitude + 0xfffu + ((magnitude >> 13) & 1u) - (112u << 23)) >> 13);
}

// fp32 -> bf16 bits, round to nearest even; NaN stays a quiet NaN.
uint tw_f32_to_bf16_bits(float value) {
    uint bits = floatBitsToUint(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (bits >> 16) | 0x40u;
    return (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
}

float tw_f16_bits_to_f32(uint bits) { return unpackHalf2x16(bits).x; }
float tw_bf16_bits_to_f32(uint bits) { return uintBitsToFloat(bits << 16); }

#if TW_DTYPE == 1
#define TW_LD(b, i) tw_f16_bits_to_f32(uint(b[i]))
#define TW_ST(b, i, v) b[i] = uint16_t(tw_f32_to_f16_bits(v))
#elif TW_DTYPE == 2
#define TW_LD(b, i) tw_bf16_bits_to_f32(uint(b[i]))
#define TW_ST(b, i, v) b[i] = uint16_t(tw_f32_to_bf16_bits(v))
#else
#error "TW_DTYPE must be 0 (f32), 1 (f16) or 2 (bf16)"
#endif
#endif

#endif
