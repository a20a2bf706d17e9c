# openapi.cmake — the contract in the binary: api/openapi.json and the Swagger UI of the npm
# package swagger-ui-dist are embedded into ah_api (served by src/api/openapi.c). Included from
# the top-level CMakeLists.txt right after the ah_api target is defined.

set(AH_OPENAPI_DOC ${CMAKE_SOURCE_DIR}/api/openapi.json)
set(AH_SWAGGER_UI_DIR ${CMAKE_SOURCE_DIR}/node_modules/swagger-ui-dist)

if(NOT EXISTS ${AH_SWAGGER_UI_DIR}/swagger-ui-bundle.js)
  message(FATAL_ERROR
    "node_modules/swagger-ui-dist is missing: run scripts/deps.sh (it installs the npm "
    "packages pinned by package-lock.json).")
endif()

# Only what the page loads, plus the licence texts that must travel with the code. Source maps
# and the ES-module bundles stay out: they would double the size of the binary.
set(AH_SWAGGER_UI_FILES
  ${AH_SWAGGER_UI_DIR}/swagger-ui.css
  ${AH_SWAGGER_UI_DIR}/swagger-ui-bundle.js
  ${AH_SWAGGER_UI_DIR}/favicon-16x16.png
  ${AH_SWAGGER_UI_DIR}/favicon-32x32.png
  ${AH_SWAGGER_UI_DIR}/oauth2-redirect.html
  ${AH_SWAGGER_UI_DIR}/oauth2-redirect.js
  ${AH_SWAGGER_UI_DIR}/LICENSE
  ${AH_SWAGGER_UI_DIR}/NOTICE
  ${AH_SWAGGER_UI_DIR}/swagger-ui-bundle.js.LICENSE.txt)
foreach(f ${AH_SWAGGER_UI_FILES})
  if(NOT EXISTS ${f})
    message(FATAL_ERROR "${f} is missing: run scripts/deps.sh (swagger-ui-dist changed layout?)")
  endif()
endforeach()

# A broken document must fail the build, not the server at start: parse it here.
file(READ ${AH_OPENAPI_DOC} ah_openapi_text)
string(JSON ah_openapi_version ERROR_VARIABLE ah_openapi_error GET "${ah_openapi_text}" openapi)
if(ah_openapi_error OR NOT ah_openapi_version MATCHES "^3\\.1\\.")
  message(FATAL_ERROR "api/openapi.json is not an OpenAPI 3.1 document: ${ah_openapi_error}")
endif()
unset(ah_openapi_text)
set_property(DIRECTORY ${CMAKE_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${AH_OPENAPI_DOC})

ah_embed(${CMAKE_BINARY_DIR}/openapi_doc.c api_openapi_doc ${CMAKE_SOURCE_DIR}/api
         ${AH_OPENAPI_DOC})
ah_embed(${CMAKE_BINARY_DIR}/swagger_ui.c api_swagger_ui ${AH_SWAGGER_UI_DIR}
         ${AH_SWAGGER_UI_FILES})
target_sources(ah_api PRIVATE ${CMAKE_BINARY_DIR}/openapi_doc.c ${CMAKE_BINARY_DIR}/swagger_ui.c)
