# web.cmake — the web UI (web/, TypeScript + Preact) built by esbuild and embedded into ah_api,
# where src/api/webui.c serves it under `ah webui` (issue 14).
#
# Two uses of this one file:
#  - included from the top-level CMakeLists.txt: declares the build step. web/build.mjs (node)
#    generates the API types from api/openapi.json (openapi-typescript), type-checks the sources
#    (tsc, strict), bundles them (esbuild) with content-hashed names, writes index.html and a
#    .gz variant of every file into ${CMAKE_BINARY_DIR}/web/dist, and checks the size budget.
#  - run as a script (cmake -DOUT=… -DDIST=… -P web.cmake): embeds whatever the build wrote. The
#    hashed names are only known after the build, so the file list is globbed then, not here.
if(CMAKE_SCRIPT_MODE_FILE)
  file(GLOB_RECURSE FILES LIST_DIRECTORIES false "${DIST}/*")
  if(NOT FILES)
    message(FATAL_ERROR "web.cmake: ${DIST} is empty: the web build wrote nothing")
  endif()
  string(REPLACE ";" "|" FILES "${FILES}")
  set(SYMBOL api_webui_files)
  set(BASE "${DIST}")
  include(${CMAKE_CURRENT_LIST_DIR}/embed.cmake)
  return()
endif()

find_program(AH_NODE node)
if(NOT AH_NODE)
  message(FATAL_ERROR "node is missing: run scripts/deps.sh (the web UI is built with node)")
endif()
foreach(pkg esbuild preact typescript openapi-typescript)
  if(NOT EXISTS ${CMAKE_SOURCE_DIR}/node_modules/${pkg}/package.json)
    message(FATAL_ERROR
      "node_modules/${pkg} is missing: run scripts/deps.sh (it installs the npm packages "
      "pinned by package-lock.json).")
  endif()
endforeach()

file(GLOB_RECURSE AH_WEB_SOURCES CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/web/src/*.ts ${CMAKE_SOURCE_DIR}/web/src/*.tsx
     ${CMAKE_SOURCE_DIR}/web/src/*.css ${CMAKE_SOURCE_DIR}/web/public/*)
set(AH_WEB_OUT ${CMAKE_BINARY_DIR}/web)
add_custom_command(
  OUTPUT ${CMAKE_BINARY_DIR}/webui_files.c
  COMMAND ${AH_NODE} ${CMAKE_SOURCE_DIR}/web/build.mjs --out ${AH_WEB_OUT}
  COMMAND ${CMAKE_COMMAND} -DOUT=${CMAKE_BINARY_DIR}/webui_files.c -DDIST=${AH_WEB_OUT}/dist
          -P ${CMAKE_SOURCE_DIR}/cmake/web.cmake
  DEPENDS ${AH_WEB_SOURCES} ${CMAKE_SOURCE_DIR}/web/build.mjs
          ${CMAKE_SOURCE_DIR}/web/tsconfig.json ${CMAKE_SOURCE_DIR}/api/openapi.json
          ${CMAKE_SOURCE_DIR}/package-lock.json ${CMAKE_SOURCE_DIR}/cmake/web.cmake
          ${CMAKE_SOURCE_DIR}/cmake/embed.cmake
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  COMMENT "Building and embedding the web UI"
  VERBATIM)
target_sources(ah_api PRIVATE ${CMAKE_BINARY_DIR}/webui_files.c)
