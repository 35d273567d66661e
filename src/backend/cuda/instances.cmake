# Generates one CUDA translation unit per line of decode_instances.inc into the build tree, so that the instance
# list is data (the planner's table can replace the .inc) and each instance compiles in parallel.
set(KVFLASH_DECODE_INSTANCE_LIST ${CMAKE_CURRENT_LIST_DIR}/decode_instances.inc)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${KVFLASH_DECODE_INSTANCE_LIST})
file(STRINGS ${KVFLASH_DECODE_INSTANCE_LIST} kvflash_instance_lines REGEX "^KVFLASH_DECODE_INSTANCE\\(")
set(KVFLASH_CUDA_INSTANCE_SOURCES "")
foreach(line IN LISTS kvflash_instance_lines)
  if(NOT line MATCHES "^KVFLASH_DECODE_INSTANCE\\(([0-9]+), *([0-9]+), *([a-z0-9_]+), *([a-z0-9_]+)\\)")
    message(FATAL_ERROR "decode_instances.inc: cannot parse '${line}'")
  endif()
  set(dk ${CMAKE_MATCH_1})
  set(dv ${CMAKE_MATCH_2})
  set(kt ${CMAKE_MATCH_3})
  set(vt ${CMAKE_MATCH_4})
  set(file ${PROJECT_BINARY_DIR}/generated/cuda/decode_${dk}_${dv}_${kt}_${vt}.cu)
  file(CONFIGURE OUTPUT ${file} CONTENT
"// Generated from src/backend/cuda/decode_instances.inc by instances.cmake; do not edit.
#include \"backend/cuda/decode_split_kv.cuh\"

namespace kvflash::cuda {
template Status launch_decode<${dk}, ${dv}, KvType::${kt}, KvType::${vt}>(const AttentionProblem&, const SplitPlan&,
                                                                        void*, cudaStream_t);
template StatusOr<KernelGeometry> decode_geometry<${dk}, ${dv}, KvType::${kt}, KvType::${vt}>();
}  // namespace kvflash::cuda
")
  list(APPEND KVFLASH_CUDA_INSTANCE_SOURCES ${file})
endforeach()
