# `cmake --install`: the public headers (with the generated version.h), the CMake package (kvflash::kvflash,
# kvflash::kvflash_static, a version file) and kvflash.pc. The library and tool targets install themselves in
# src/ and tools/kvflash/; this file is included once all targets exist.
#
# Components: "runtime" (shared library), "development" (headers, static library, CMake package, pkg-config),
# "tools" (the kvflash executable). The Python wheel installs only its own component, "python".
include(CMakePackageConfigHelpers)

set(KVFLASH_CMAKE_PACKAGE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/kvflash)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/kvflash ${PROJECT_BINARY_DIR}/include/kvflash
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development FILES_MATCHING PATTERN "*.h")

install(EXPORT kvflashTargets NAMESPACE kvflash:: DESTINATION ${KVFLASH_CMAKE_PACKAGE_DIR} COMPONENT development)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/kvflashConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/cmake/kvflashConfig.cmake
                              INSTALL_DESTINATION ${KVFLASH_CMAKE_PACKAGE_DIR})
# The SONAME changes with the major version (libkvflash.so.0), so only the same major version is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/kvflashConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/kvflashConfig.cmake ${PROJECT_BINARY_DIR}/cmake/kvflashConfigVersion.cmake
        DESTINATION ${KVFLASH_CMAKE_PACKAGE_DIR} COMPONENT development)

# pkg-config: paths relative to the .pc file when the install dirs are relative (the usual case), so the
# installed tree can be moved or installed with --prefix.
set(KVFLASH_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(KVFLASH_PC_PREFIX ${CMAKE_INSTALL_PREFIX})
  set(KVFLASH_PC_LIBDIR ${CMAKE_INSTALL_FULL_LIBDIR})
  set(KVFLASH_PC_INCLUDEDIR ${CMAKE_INSTALL_FULL_INCLUDEDIR})
else()
  file(RELATIVE_PATH KVFLASH_PC_PREFIX /prefix/${KVFLASH_PC_DIR} /prefix)
  string(REGEX REPLACE "/$" "" KVFLASH_PC_PREFIX "${KVFLASH_PC_PREFIX}")
  set(KVFLASH_PC_PREFIX "\${pcfiledir}/${KVFLASH_PC_PREFIX}")
  set(KVFLASH_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(KVFLASH_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
# What a static link (`pkg-config --static`) needs besides libkvflash.a: the C++ runtime (C programs link it too),
# threads, libm, and the CUDA runtime when the library has its CUDA backend.
set(KVFLASH_PC_LIBS_PRIVATE "-lstdc++ -lm -pthread")
if(KVFLASH_HAVE_CUDA)
  string(APPEND KVFLASH_PC_LIBS_PRIVATE " -L${CUDAToolkit_LIBRARY_DIR} -lcudart")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/kvflash.pc.in ${PROJECT_BINARY_DIR}/kvflash.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/kvflash.pc DESTINATION ${KVFLASH_PC_DIR} COMPONENT development)
