# The CUDA kernel instances come from the kernel table (src/plan/kernel_table.h): the host program
# tools/gen_kernels/gen_instances reads the table and writes one .cu file per specialized instance plus
# kernel_registry.cu (KernelId -> launch function). Included from src/CMakeLists.txt, in the directory of
# kvflash_obj, because a custom command's outputs can only be sources of targets in its own directory.

add_executable(kvflash_gen_instances ${PROJECT_SOURCE_DIR}/tools/gen_kernels/gen_instances.cpp)
target_include_directories(kvflash_gen_instances PRIVATE
  ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src ${PROJECT_BINARY_DIR}/include)
target_compile_options(kvflash_gen_instances PRIVATE ${KVFLASH_WARNINGS})

if(KVFLASH_HAVE_CUDA)
  # Which files the generator writes depends on the table, and CMake must know them when it configures: compile and
  # run the generator once now (--list), and configure again whenever the table changes.
  set(KVFLASH_GEN_DIR ${CMAKE_CURRENT_BINARY_DIR}/generated_kernels)
  try_run(gen_run_result gen_compile_result
    ${CMAKE_CURRENT_BINARY_DIR}/gen_instances_probe
    ${PROJECT_SOURCE_DIR}/tools/gen_kernels/gen_instances.cpp
    CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${PROJECT_SOURCE_DIR}/include;${PROJECT_SOURCE_DIR}/src;${PROJECT_BINARY_DIR}/include"
    CXX_STANDARD 20
    CXX_STANDARD_REQUIRED ON
    COMPILE_OUTPUT_VARIABLE gen_compile_output
    RUN_OUTPUT_VARIABLE gen_listed
    ARGS --list)
  if(NOT gen_compile_result OR NOT gen_run_result EQUAL 0)
    message(FATAL_ERROR "kvflash: the kernel instance generator failed:\n${gen_compile_output}\n${gen_listed}")
  endif()
  string(STRIP "${gen_listed}" gen_listed)
  string(REPLACE "\n" ";" gen_files "${gen_listed}")
  set(KVFLASH_GENERATED_CUDA_SOURCES "")
  foreach(f ${gen_files})
    list(APPEND KVFLASH_GENERATED_CUDA_SOURCES ${KVFLASH_GEN_DIR}/${f})
  endforeach()
  # The generator rewrites only files whose content changes; the stamp is what the build waits on.
  add_custom_command(
    OUTPUT ${KVFLASH_GEN_DIR}/instances.stamp
    BYPRODUCTS ${KVFLASH_GENERATED_CUDA_SOURCES}
    COMMAND kvflash_gen_instances --out ${KVFLASH_GEN_DIR}
    DEPENDS kvflash_gen_instances ${PROJECT_SOURCE_DIR}/src/plan/kernel_table.h
    COMMENT "Generating CUDA kernel instances from src/plan/kernel_table.h")
  add_custom_target(kvflash_generated_kernels DEPENDS ${KVFLASH_GEN_DIR}/instances.stamp)
  target_sources(kvflash_obj PRIVATE ${KVFLASH_GENERATED_CUDA_SOURCES})
  add_dependencies(kvflash_obj kvflash_generated_kernels)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/plan/kernel_table.h)
  list(LENGTH gen_files gen_count)
  message(STATUS "kvflash: ${gen_count} generated CUDA sources (instances + registry)")
endif()
