# twist_embed_files(OUT_VAR PREFIX file...): adds a build step per file that generates
# ${CMAKE_BINARY_DIR}/embedded/<PREFIX>_<name>.c defining `<PREFIX>_<name>` (name with dots made
# underscores), and appends the generated sources to OUT_VAR.
function(twist_embed_files out_var prefix)
    set(generated)
    foreach(input IN LISTS ARGN)
        get_filename_component(name "${input}" NAME)
        string(MAKE_C_IDENTIFIER "${prefix}_${name}" symbol)
        set(output "${CMAKE_BINARY_DIR}/embedded/${symbol}.c")
        add_custom_command(
            OUTPUT "${output}"
            COMMAND ${CMAKE_COMMAND} -DINPUT=${input} -DOUTPUT=${output} -DSYMBOL=${symbol}
                    -P "${PROJECT_SOURCE_DIR}/cmake/embed.cmake"
            DEPENDS "${input}" "${PROJECT_SOURCE_DIR}/cmake/embed.cmake"
            COMMENT "Embedding ${name}"
            VERBATIM)
        list(APPEND generated "${output}")
    endforeach()
    set(${out_var} ${${out_var}} ${generated} PARENT_SCOPE)
endfunction()
