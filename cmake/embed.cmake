# Turns a text file (an OpenCL C kernel, a shader) into a C source that defines
#   const char <SYMBOL>[];  const size_t <SYMBOL>_size;
# so kernels live in their own files and are embedded in the library at build time.
# Usage: cmake -DINPUT=file.cl -DOUTPUT=file.c -DSYMBOL=name -P embed.cmake
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR byte_count "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# Break the initializer into lines of 16 bytes to keep the generated file readable by compilers.
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUTPUT}"
    "/* Generated from ${INPUT} by cmake/embed.cmake. Do not edit. */\n"
    "#include <stddef.h>\n"
    "const char ${SYMBOL}[] = {\n    ${bytes}0x00};\n"
    "const size_t ${SYMBOL}_size = ${byte_count};\n")
