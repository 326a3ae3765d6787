# Installation: the public headers (with the generated .h.inc files they
# include), the static libraries and the CMake package `lq`, so that a
# project outside this tree writes
#
#   find_package(lq REQUIRED)
#   target_link_libraries(app PRIVATE lq::runtime)
#
# The libraries are installed as static archives built with -fPIC; they link
# the MLIR and LLVM libraries through the imported targets of the MLIR
# package, which lqConfig.cmake finds again for the consumer.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(LQ_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/lq" CACHE STRING
  "Where the CMake package of lq is installed, relative to the prefix")
mark_as_advanced(LQ_INSTALL_CMAKEDIR)

# Every static library of the project is exported, so that the link
# interface of lq::runtime (and of any library added later) only names
# exported targets. The exported name is the target's without "LQ", in
# snake case: LQRuntime -> lq::runtime, LQRuntimeCache -> lq::runtime_cache,
# LQNumerics -> lq::numerics, LQInitAll -> lq::init_all.
function(lq_collect_libraries dir out)
  set(found)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "STATIC_LIBRARY" AND target MATCHES "^LQ")
      list(APPEND found ${target})
    endif()
  endforeach()
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(subdir IN LISTS subdirs)
    lq_collect_libraries(${subdir} more)
    list(APPEND found ${more})
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()

lq_collect_libraries(${PROJECT_SOURCE_DIR}/lib LQ_INSTALLED_TARGETS)
foreach(target IN LISTS LQ_INSTALLED_TARGETS)
  string(REGEX REPLACE "^LQ" "" name ${target})
  string(REGEX REPLACE "([a-z0-9])([A-Z])" "\\1_\\2" name ${name})
  string(TOLOWER ${name} name)
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${name})
endforeach()
if(NOT "LQRuntime" IN_LIST LQ_INSTALLED_TARGETS)
  message(FATAL_ERROR "lqInstall.cmake: no LQRuntime library under lib/")
endif()

install(TARGETS ${LQ_INSTALLED_TARGETS}
  EXPORT lqTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# Headers: the source tree's, and the generated declarations (.h.inc) of
# the dialect and passes from the build tree.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/lq
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(DIRECTORY ${PROJECT_BINARY_DIR}/include/lq
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h.inc"
  PATTERN "CMakeFiles" EXCLUDE)

install(EXPORT lqTargets
  NAMESPACE lq::
  FILE lqTargets.cmake
  DESTINATION ${LQ_INSTALL_CMAKEDIR})

# lqConfig.cmake finds MLIR where this build found it unless the consumer
# sets MLIR_DIR.
set(LQ_CONFIG_MLIR_DIR "${MLIR_DIR}")
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/lqConfig.cmake.in
  ${PROJECT_BINARY_DIR}/lqConfig.cmake
  INSTALL_DESTINATION ${LQ_INSTALL_CMAKEDIR})
# 0.x releases: a minor version may break the API.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/lqConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/lqConfig.cmake
  ${PROJECT_BINARY_DIR}/lqConfigVersion.cmake
  DESTINATION ${LQ_INSTALL_CMAKEDIR})
