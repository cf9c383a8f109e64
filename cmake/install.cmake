# Installation and packaging: included (OPTIONAL) at the end of the top-level CMakeLists.txt.
#
# Installs libpccl.so (target pccl), libpccl.a (target pccl_static), pccl-master and the headers
# (pccl.h, ccoip.h, ccoip_inet.h), and makes the installed tree consumable two ways:
#   - CMake:      find_package(pccl CONFIG REQUIRED) -> pccl::pccl (shared), pccl::pccl_static
#   - pkg-config: pkg-config --cflags --libs pccl          (shared)
#                 pkg-config --static --cflags --libs pccl (static: adds the private deps)
#
# The static library carries its private dependencies (zstd, xxhash, OpenSSL's libcrypto,
# threads) in its link interface; pcclConfig.cmake finds them again on the consumer's side.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(PCCL_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/pccl" CACHE STRING
    "Where pcclConfig.cmake is installed, relative to the prefix")

# In-tree consumers can use the same names as installed ones.
if(NOT TARGET pccl::pccl_static)
  add_library(pccl::pccl_static ALIAS pccl_static)
endif()

# xxhash is linked by absolute path (find_library) in the build tree. An absolute path of the
# build machine must not end up in the exported link interface: there it is replaced by the
# imported target pccl::xxhash, which pcclConfig.cmake defines with find_library.
foreach(_pccl_t pccl pccl_static)
  get_target_property(_pccl_libs ${_pccl_t} INTERFACE_LINK_LIBRARIES)
  if(NOT _pccl_libs OR NOT XXHASH_LIBRARY)
    continue()
  endif()
  set(_pccl_new "")
  foreach(_pccl_lib IN LISTS _pccl_libs)
    if(_pccl_lib STREQUAL "$<LINK_ONLY:${XXHASH_LIBRARY}>")
      list(APPEND _pccl_new "$<BUILD_INTERFACE:$<LINK_ONLY:${XXHASH_LIBRARY}>>"
                            "$<INSTALL_INTERFACE:$<LINK_ONLY:pccl::xxhash>>")
    elseif(_pccl_lib STREQUAL "${XXHASH_LIBRARY}")
      list(APPEND _pccl_new "$<BUILD_INTERFACE:${XXHASH_LIBRARY}>" "$<INSTALL_INTERFACE:pccl::xxhash>")
    else()
      list(APPEND _pccl_new "${_pccl_lib}")
    endif()
  endforeach()
  set_property(TARGET ${_pccl_t} PROPERTY INTERFACE_LINK_LIBRARIES "${_pccl_new}")
endforeach()

install(TARGETS pccl pccl_static
  EXPORT pcclTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT devel
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT devel
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS pccl-master RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
if(TARGET pccl-top)
  install(TARGETS pccl-top RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
endif()
# The public headers, side by side: pccl.h includes ccoip.h and ccoip_inet.h by "name", and PCCL 1.0
# programs include <ccoip.h> themselves.
install(FILES ${PROJECT_SOURCE_DIR}/include/pccl.h ${PROJECT_SOURCE_DIR}/include/ccoip.h
              ${PROJECT_SOURCE_DIR}/include/ccoip_inet.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT devel)

install(EXPORT pcclTargets
  NAMESPACE pccl::
  FILE pcclTargets.cmake
  DESTINATION ${PCCL_INSTALL_CMAKEDIR}
  COMPONENT devel)

# Built with PCCL_HTTP, libpccl.a needs cpp-httplib too (pcclConfig.cmake, pccl.pc).
if(PCCL_HTTP)
  set(PCCL_HTTP_CONFIG TRUE)
  set(PCCL_PC_HTTP " cpp-httplib")
else()
  set(PCCL_HTTP_CONFIG FALSE)
  set(PCCL_PC_HTTP "")
endif()
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/pcclConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/pcclConfig.cmake
  INSTALL_DESTINATION ${PCCL_INSTALL_CMAKEDIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_BINDIR)
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/pcclConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/pcclConfig.cmake ${PROJECT_BINARY_DIR}/cmake/pcclConfigVersion.cmake
  DESTINATION ${PCCL_INSTALL_CMAKEDIR}
  COMPONENT devel)

# pkg-config. The prefix is only known for sure at install time (`cmake --install --prefix`
# may override the configured one), so pccl.pc is written then from a template whose other
# fields are filled now.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(PCCL_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(PCCL_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(PCCL_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(PCCL_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/pccl.pc.in ${PROJECT_BINARY_DIR}/cmake/pccl.pc.stage @ONLY)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(_pccl_pc_dest "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
else()
  set(_pccl_pc_dest "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig")
endif()
install(CODE "
  file(READ \"${PROJECT_BINARY_DIR}/cmake/pccl.pc.stage\" _pccl_pc)
  string(REPLACE \"%PCCL_PREFIX%\" \"\${CMAKE_INSTALL_PREFIX}\" _pccl_pc \"\${_pccl_pc}\")
  file(WRITE \"${PROJECT_BINARY_DIR}/cmake/pkgconfig/pccl.pc\" \"\${_pccl_pc}\")
  file(INSTALL DESTINATION \"${_pccl_pc_dest}\" TYPE FILE FILES \"${PROJECT_BINARY_DIR}/cmake/pkgconfig/pccl.pc\")
" COMPONENT devel)
