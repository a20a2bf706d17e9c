# libah-client: src/client + the public headers include/ah/*.h (included by the top-level
# CMakeLists.txt after ah_api). Targets:
#   ah_client_static  static library used in-tree (tests, later the CLI); links ah_core
#   ah_client         shared library libah-client.so.0 (SONAME), only the public ah_* API exported
#   ah_client_archive the installed libah-client.a: ah_client_static and ah_core merged, so the
#                     installed static library needs nothing from the build tree
# plus ah-client.pc and install rules (cmake --install).
include(GNUInstallDirs)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl>=7.85)

file(GLOB CLIENT_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/client/*.c)
set(AH_CLIENT_HEADERS
    ${CMAKE_SOURCE_DIR}/include/ah/error.h
    ${CMAKE_SOURCE_DIR}/include/ah/client.h
    ${CMAKE_SOURCE_DIR}/include/ah/clock.h
    ${CMAKE_SOURCE_DIR}/include/ah/task_manager.h)

# One compilation, two libraries.
add_library(ah_client_obj OBJECT ${CLIENT_SRC})
target_include_directories(ah_client_obj PUBLIC ${CMAKE_SOURCE_DIR}/include)
target_link_libraries(ah_client_obj PUBLIC PkgConfig::CURL PkgConfig::JANSSON Threads::Threads)

add_library(ah_client_static STATIC $<TARGET_OBJECTS:ah_client_obj>)
target_include_directories(ah_client_static PUBLIC ${CMAKE_SOURCE_DIR}/include)
target_link_libraries(ah_client_static PUBLIC ah_core PkgConfig::CURL PkgConfig::JANSSON
                      Threads::Threads)
set_target_properties(ah_client_static PROPERTIES OUTPUT_NAME ah-client-intree)

# The shared library exports the public API only: ah_core's internal symbols (and its few ah_
# helpers that are not public) stay local, so they cannot clash with an application's.
set(AH_CLIENT_MAP ${CMAKE_BINARY_DIR}/ah-client.map)
file(WRITE ${AH_CLIENT_MAP} "AH_CLIENT_0 {\n  global:\n"
     "    ah_client_*; ah_api_error_*; ah_retry_*; ah_cancel_*; ah_clock_*;\n"
     "    ah_task_manager_*; ah_mock_*; ah_session_*; ah_event_*; ah_task_spec_*;\n"
     "    ah_task_created_*; ah_draft_*; ah_repo_list_*; ah_branch_list_*; ah_version_free;\n"
     "    ah_prompt_ack_free; ah_strerror; ah_error_name;\n"
     "  local: *;\n};\n")
add_library(ah_client SHARED $<TARGET_OBJECTS:ah_client_obj>)
target_include_directories(ah_client PUBLIC ${CMAKE_SOURCE_DIR}/include)
target_link_libraries(ah_client PRIVATE ah_core PkgConfig::CURL PkgConfig::JANSSON
                      Threads::Threads)
target_link_options(ah_client PRIVATE -Wl,--version-script=${AH_CLIENT_MAP} -Wl,--no-undefined)
set_target_properties(ah_client PROPERTIES OUTPUT_NAME ah-client VERSION ${PROJECT_VERSION}
                      SOVERSION 0 LINK_DEPENDS ${AH_CLIENT_MAP})

# The installable static archive: client objects + ah_core in one libah-client.a.
set(AH_CLIENT_ARCHIVE ${CMAKE_BINARY_DIR}/libah-client.a)
set(AH_CLIENT_MRI ${CMAKE_BINARY_DIR}/ah-client-archive.mri)
file(GENERATE OUTPUT ${AH_CLIENT_MRI} CONTENT
     "CREATE ${AH_CLIENT_ARCHIVE}\nADDLIB $<TARGET_FILE:ah_client_static>\nADDLIB $<TARGET_FILE:ah_core>\nSAVE\nEND\n")
add_custom_command(OUTPUT ${AH_CLIENT_ARCHIVE}
                   COMMAND ${CMAKE_COMMAND} -E remove -f ${AH_CLIENT_ARCHIVE}
                   COMMAND ${CMAKE_AR} -M < ${AH_CLIENT_MRI}
                   DEPENDS ah_client_static ah_core ${AH_CLIENT_MRI}
                   COMMENT "Merging libah-client.a")
add_custom_target(ah_client_archive ALL DEPENDS ${AH_CLIENT_ARCHIVE})

# pkg-config: relocatable (prefix found from the .pc file's own place), so
# `cmake --install build --prefix /any/where` gives a working ah-client.pc.
file(RELATIVE_PATH AH_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" AH_PC_TO_PREFIX "${AH_PC_TO_PREFIX}")
file(WRITE ${CMAKE_BINARY_DIR}/ah-client.pc
     "prefix=\${pcfiledir}/${AH_PC_TO_PREFIX}\n"
     "libdir=\${prefix}/${CMAKE_INSTALL_LIBDIR}\n"
     "includedir=\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}\n\n"
     "Name: ah-client\n"
     "Description: Agent Harbor REST client library (libah-client)\n"
     "Version: ${PROJECT_VERSION}\n"
     "Requires.private: libcurl jansson\n"
     "Cflags: -I\${includedir}\n"
     "Libs: -L\${libdir} -lah-client\n"
     "Libs.private: -lpthread\n")

install(TARGETS ah_client LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${AH_CLIENT_ARCHIVE} DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${AH_CLIENT_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ah)
install(FILES ${CMAKE_BINARY_DIR}/ah-client.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
install(FILES ${CMAKE_SOURCE_DIR}/examples/list-sessions.c
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
